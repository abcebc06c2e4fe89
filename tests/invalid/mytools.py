"""Tools the corpus files name (tests/invalid/*.yaml): `runner validate` checks that the functions exist."""


def search(query: str) -> str:
    """Search the notes."""
    return f"results for {query}"


def lookup(key: str, scope: str = "all") -> str:
    """Look a key up."""
    return f"{key} in {scope}"
