"""What can go wrong with a user's destination, in words the job row and the user can act on."""


class DestinationError(RuntimeError):
    """A destination cannot be used; the message names it (without credentials) and the reason."""


class DestinationNotAllowed(DestinationError):
    """The URL's scheme or host is not one users may choose here (or points into goalport)."""


class DestinationCredentialError(DestinationError):
    """The destination refused its credentials (revoked, expired, wrong): the user must reconnect."""
