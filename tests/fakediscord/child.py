"""`python -m tests.fakediscord.child ARGS`: `python -m bot ARGS`, with Discord's media host names
routed to the test server whose port and CA are in the environment (see
:func:`tests.fakediscord.hostroutes.child_environment`). The product runs unchanged; only name
resolution and the trusted certificates of its process differ, as in the in-process tests.
"""

import sys

from tests.fakediscord.hostroutes import route_from_environment

if __name__ == "__main__":
    route_from_environment()
    from bot.cli.main import main

    sys.exit(main())
