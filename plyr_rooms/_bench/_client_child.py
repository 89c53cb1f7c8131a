"""Entry point of a measured client: ``python -m plyr_rooms._bench._client_child``.

Kept apart from :mod:`._client_job` so that running it never imports the module
twice (the package imports ``_client_job`` for in-process runs).
"""

from __future__ import annotations

from ._client_job import main

if __name__ == "__main__":
    main()
