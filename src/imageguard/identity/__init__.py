"""Who is asking: the application's logins, read without writing anything back.

* :mod:`.logins`: the login sources the policy asks (mod_python session or ticket);
* :mod:`.sessions`: read-only readers of mod_python's FileSession and DbmSession;
* :mod:`.tickets`: auth_tkt tickets, verified and issued;
* :mod:`.cookies`: one cookie out of ``Cookie`` headers;
* :mod:`.sharelinks`: signed, expiring links to one image;
* :mod:`.signer`: the one HMAC signer of tickets and links;
* :mod:`.secretfile`: the rotating secrets they are signed with.

Nothing is imported here: import the modules themselves.
"""
