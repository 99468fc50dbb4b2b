"""Local fake servers for provider tests: real HTTP(S) and SMTP on 127.0.0.1, port 0.

Reusable by any suite::

    from tests.fakes.google import FakeGoogle
    with FakeGoogle() as google:
        config = config.with_(origins=google.origins(), ...)
        ...
        assert google.events  # what the fake holds
"""
