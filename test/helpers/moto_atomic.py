"""moto_server with S3's atomic conditional writes.

moto checks If-Match / If-None-Match on PutObject, DeleteObject and
CompleteMultipartUpload, then writes, with no lock between the two, and its
server answers each request on a thread of its own. Two writers racing with
If-Match on one ETag can therefore both succeed on moto (seen in CI: two of
eight in one round). S3 does not allow that: of concurrent conditional
writes to one key, one wins and the others fail with 412 Precondition Failed
(or 409 ConditionalRequestConflict), as the S3 User Guide's page on
conditional writes describes. The proxy relies on that when several
instances share a backend, so its tests need a server that keeps it.

This wrapper serializes moto's object write handlers (the request body is
already read by then, so a slow client does not hold the lock) and then runs
moto_server's own entry point with the same arguments.
"""

import functools
import sys
import threading

from moto.s3.responses import S3Response
from moto.server import main

_lock = threading.RLock()


def _serialized(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _lock:
            return fn(*args, **kwargs)

    return wrapper


# put_object and delete_object hold the checks of PutObject / DeleteObject;
# _key_response_post holds CompleteMultipartUpload's (If-None-Match).
for _name in ("put_object", "delete_object", "_key_response_post", "copy_object"):
    if hasattr(S3Response, _name):
        setattr(S3Response, _name, _serialized(getattr(S3Response, _name)))
    else:
        # A moto whose handlers moved: better no server than a racy one.
        sys.exit(f"moto_atomic: this moto has no S3Response.{_name}; update moto_atomic.py")

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
