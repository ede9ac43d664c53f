"""What the pages of one running app share: the job pool and cache, and the uploaded files."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from hwsim.app.jobs import Jobs
from hwsim.app.specs import Uploads, device_options


@dataclass
class AppContext:
    jobs: Jobs = field(default_factory=Jobs)
    uploads: Uploads = field(default_factory=Uploads)
    uploaded: list[str] = field(default_factory=list)  #: keys of uploaded devices, in order
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def folder(self) -> Path:
        """Where the app writes files: uploads and what-if YAML."""
        return self.uploads.root

    def add_upload(self, filename: str, contents: str) -> str:
        key = self.uploads.add(filename, contents)
        with self._lock:
            if key not in self.uploaded:
                self.uploaded.append(key)
        return key

    def device_options(self) -> list[dict[str, str]]:
        with self._lock:
            keys = list(self.uploaded)
        return device_options(self.uploads, keys)
