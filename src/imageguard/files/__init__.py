"""Which bytes are sent: the file a request names, checked, opened and perhaps rendered.

* :mod:`.gate`: the access gate (methods, paths, extensions, file types) and opening
  the admitted file;
* :mod:`.beneath`: opening a path below a root without following any link;
* :mod:`.fileversion`: a file's version, the key of every cache, and opening just it;
* :mod:`.content`: whether a file is the image its extension promises;
* :mod:`.renditions`: thumbnails and watermarked previews (Pillow);
* :mod:`.renditioncache`: one rendering per rendition, kept in atomic files;
* :mod:`.placeholder`: the padlock picture sent for a refused image.

Nothing is imported here: import the modules themselves.
"""
