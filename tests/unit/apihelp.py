"""What the API route tests share: the shape of a 4xx."""


def assert_error(resp, status: int, param: str) -> str:
    """The response is a `status` JSON error naming `param`, one line, no traceback; returns its message."""
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["param"] == param, err
    assert "\n" not in err["message"] and "Traceback" not in err["message"]
    return err["message"]
