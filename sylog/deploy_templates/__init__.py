"""Client-side deploy files, packaged so a pip-installed sylog can print them (``sylog client-setup``).

These templates are the single source of truth: the files under ``deploy/`` in the repository are rendered from
them with example values (``write_examples`` in :mod:`sylog.commands.client_setup`), and a test checks that the
two agree. Placeholders are ``{{name}}``; the shell script is copied verbatim (it has its own ``${...}``).
"""
