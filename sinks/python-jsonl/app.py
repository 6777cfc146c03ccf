"""The `pythonJsonl` sink: writes each message as one line of a file (JSON lines).

It truncates the file when the rule starts (generation 0) and appends in a replacement instance,
flushing every batch before it returns.
"""

from dataclasses import dataclass

import oort_sink as oort


@dataclass
class Config:
    #: The file to write; granted to the sink by its manifest.
    path: str


class JsonLines(oort.Sink):
    Config = Config

    def __init__(self, ctx, config):
        super().__init__(ctx, config)
        if not config.path:
            raise oort.InvalidConfig("prop `path`: must not be empty")
        self.file = None

    def open(self):
        mode = "w" if self.ctx.generation == 0 else "a"
        self.file = open(self.config.path, mode, encoding="utf-8")

    def collect(self, batch):
        self.file.writelines(message.text() + "\n" for message in batch)
        self.file.flush()

    def close(self):
        if self.file is not None:
            self.file.close()


Sink = oort.export(JsonLines)
