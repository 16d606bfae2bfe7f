"""A Matomo-compatible test server that copies Matomo 5.11's answers, quirks included.

    from tests.fakematomo import FakeMatomo, Fault, SUPERUSER_TOKEN, ADMIN_TOKEN, VIEW_TOKEN

See the reference matomo-api.md for the behaviour it copies; server.py for the public class.
"""

from tests.fakematomo.access import ADMIN_TOKEN, SUPERUSER_TOKEN, VIEW_TOKEN, Access, Site
from tests.fakematomo.faults import Fault
from tests.fakematomo.server import MAX_BODY, FakeMatomo
from tests.fakematomo.state import RequestRecord

__all__ = [
    "ADMIN_TOKEN",
    "MAX_BODY",
    "SUPERUSER_TOKEN",
    "VIEW_TOKEN",
    "Access",
    "FakeMatomo",
    "Fault",
    "RequestRecord",
    "Site",
]
