"""Bilingual text: every message a student reads exists in Chinese and English."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Lang = Literal["zh", "en"]


@dataclass(frozen=True)
class Msg:
    """One message in both languages; ``render`` picks one, ``str`` gives both."""

    zh: str
    en: str

    def render(self, lang: Lang) -> str:
        return self.zh if lang == "zh" else self.en

    def __add__(self, other: "Msg") -> "Msg":
        return Msg(f"{self.zh}\n{other.zh}", f"{self.en}\n{other.en}")

    def __str__(self) -> str:
        return f"{self.zh} / {self.en}" if self.zh != self.en else self.en

