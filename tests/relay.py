"""A TCP relay in front of a test server (MariaDB, Redis): the network path a test can break
the ways a real one breaks, and mend."""
from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "mysql": 3306}


class Relay:
    """Listens on a port of 127.0.0.1 and passes every connection on to the server of `url`.

    - `cut()`: every connection, open or new, is closed at once, as when the server restarts
      or goes away (clients see it at once);
    - `black_hole()`: connections are still accepted, but what either side sends is read and
      dropped, as when the server's host freezes or a firewall or a network partition drops
      packets (clients wait for their timeouts); `attempts` counts the connections that sent
      something meanwhile (each a client's try);
    - `restore()`: traffic is passed on again;
    - `sent`: every byte the clients sent to the server so far.

    `url` is the server's URL with the relay in its place."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.split("+")[0]
        self._target = (parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS[scheme])
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        self.url = urlunsplit(parts._replace(netloc=netloc))
        self._up = True
        self._silent = False
        self._tried: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._sent = bytearray()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def sent(self) -> bytes:
        """What the clients sent to the server so far (all connections, as it came)."""
        with self._lock:
            return bytes(self._sent)

    @property
    def attempts(self) -> int:
        """Connections that sent something while the relay was a black hole."""
        return len(self._tried)

    def cut(self) -> None:
        """Close every connection, and each new one as soon as it comes."""
        self._up = False
        with self._lock:
            sockets, self._open = self._open, []
        for s in sockets:
            _shutdown(s)

    def black_hole(self) -> None:
        """Accept connections, drop whatever is sent."""
        self._silent = True

    def restore(self) -> None:
        """Pass everything on again."""
        self._up = True
        self._silent = False

    def close(self) -> None:
        self.cut()
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self._server.accept()
            except OSError:
                return
            if not self._up:
                near.close()
                continue
            try:
                far = socket.create_connection(self._target)
            except OSError:
                near.close()
                continue
            with self._lock:
                self._open += [near, far]
            for source, sink in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(source, sink, source is near),
                                 daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if self._silent:
                    self._tried.add(source)
                    continue
                if from_client:
                    with self._lock:
                        self._sent += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # Shut down both (that wakes the other direction's recv); each pump closes its own.
            _shutdown(source)
            _shutdown(sink)
            source.close()


def _shutdown(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
