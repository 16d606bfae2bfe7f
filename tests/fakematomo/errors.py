"""The reporting API's error, carrying the HTTP status Matomo would send with it."""

from __future__ import annotations


class ApiError(Exception):
    """A Reporting API failure: rendered as {"result":"error","message":...} with `status`."""

    def __init__(self, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def unexpected_site(raw: object) -> ApiError:
    # Matomo's message really has a space before the final period.
    return ApiError(
        f"An unexpected website was found in the request: website id was set to '{raw}' ."
    )


def no_view_access(idsite: object) -> ApiError:
    return ApiError(
        "You can't access this resource as it requires 'view' access for the website id = "
        f"{idsite}.",
        401,
    )


def needs_some_access(level: str) -> ApiError:
    return ApiError(
        f"You can't access this resource as it requires {level} access for at least one website.",
        401,
    )


def needs_superuser() -> ApiError:
    return ApiError("You can't access this resource as it requires a 'superuser' access.", 401)
