"""What the tests read in the log."""


def assert_one_line(caplog, message: str) -> None:
    """Redis being away is logged in one line a failure, with the error, and no traceback."""
    [record] = [record for record in caplog.records if record.getMessage().startswith(message)]
    assert "ConnectionError" in record.getMessage() and record.exc_info is None
