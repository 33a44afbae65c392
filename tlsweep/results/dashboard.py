"""optuna-dashboard (the ``dashboard`` extra) over a sweep's studies, on a loopback address by default: history,
parallel coordinates, importance, Pareto fronts and trial notes, live while the sweep runs (the storage is read
on every request) and after it. On a cluster, forward the port: ``ssh -L 8080:127.0.0.1:8080 HEAD``."""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .studies import open_storage, resolve

HOST = "127.0.0.1"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's signature
        logging.getLogger(__name__).debug(format, *args)


@dataclass
class Dashboard:
    """A running optuna-dashboard: ``url``; ``serve_forever()`` until Ctrl-C, or ``start()``/``stop()``."""

    server: _Server
    storage_url: str

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/dashboard"

    def serve_forever(self) -> None:
        """Serve until Ctrl-C or SIGTERM (also when started with SIGINT ignored, as ``cmd &`` does)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            self.server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.server.server_close()

    def start(self) -> Dashboard:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def dashboard(target: str, port: int = 8080, host: str = HOST) -> Dashboard:
    """optuna-dashboard bound to ``host:port`` (0: a free port) over the studies of ``target``: a results folder
    (local or ``s3://…``), a journal file or an RDB URL (``tlsweep.results.studies.resolve``). Raises
    ``StudyStorageError`` for a target without studies, ``ImportError`` without optuna-dashboard and ``OSError``
    when the port is taken."""
    import optuna_dashboard

    url, _ = resolve(target)
    app = optuna_dashboard.wsgi(open_storage(url))
    return Dashboard(make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler), url)
