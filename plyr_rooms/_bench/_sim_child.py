"""Entry point of the simulator process: ``python -m plyr_rooms._bench._sim_child``.

Kept apart from :mod:`._simproc` so that running it never imports the module
twice (the package imports ``_simproc`` for the driver's side).
"""

from __future__ import annotations

from ._simproc import main

if __name__ == "__main__":
    main()
