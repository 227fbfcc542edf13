#!/bin/sh
# Recipe 1 by hand. serve_cookbook.py prints the BASE to use.
BASE=${BASE:-http://127.0.0.1:8080}
show() { curl -s -o /dev/null -w "%{http_code} $1\n" "$BASE$1"; }
show /posted-gate/photo.jpg
show /posted-gate/notes.txt
show /fixed-gate/photo.jpg
show /fixed-gate/notes.txt
show /fixed-gate/notes.txt/x.jpg
show /ignored-gate/notes.txt
