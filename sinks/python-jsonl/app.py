"""The `pythonJsonl` sink: writes each message as one line of a file (JSON lines).

`path` may be a template (`"out/{{.device}}.jsonl"`): the host evaluates it for each message and
the sink writes the message to the file its value names, keeping one file open per path (a
small sink: it does not bound how many). Each file is truncated the first time a generation-0
instance meets it (the rule starts) and appended to in a replacement instance; every batch is
flushed before `collect` returns.
"""

from dataclasses import dataclass

import oort_sink as oort


@dataclass
class Config:
    #: The file to write, or a template naming one per message; granted by the manifest.
    path: str


class JsonLines(oort.Sink):
    Config = Config

    def __init__(self, ctx, config):
        super().__init__(ctx, config)
        if not config.path:
            raise oort.InvalidConfig("prop `path`: must not be empty")
        self.files = {}

    def open(self):
        if "{{" not in self.config.path:
            self._file(self.config.path)

    def _file(self, path):
        file = self.files.get(path)
        if file is None:
            mode = "w" if self.ctx.generation == 0 else "a"
            file = self.files[path] = open(path, mode, encoding="utf-8")
        return file

    def collect(self, batch):
        paths = batch.dynamic("path")
        touched = set()
        for i, message in enumerate(batch):
            path = paths[i] if paths is not None else self.config.path
            self._file(path).write(message.text() + "\n")
            touched.add(path)
        for path in touched:
            self.files[path].flush()

    def close(self):
        for file in self.files.values():
            file.close()
        self.files = {}


Sink = oort.export(JsonLines)
