"""The `{{key}}` sink: writes every message to Oort's log with a prefix."""

from dataclasses import dataclass

import oort_sink as oort


@dataclass
class Config:
    #: Put before every message.
    prefix: str = ""


class {{plugin}}(oort.Sink):
    Config = Config

    def collect(self, batch):
        for message in batch:
            oort.log.info(self.config.prefix + message.text())


Sink = oort.export({{plugin}})
