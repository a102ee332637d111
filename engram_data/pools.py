"""Attribute pools of real facts (``pools/``): names by gender, cities, universities, majors,
and companies with their headquarters city. See ``pools/README.md`` for provenance."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Pools:
    first_names: dict[str, tuple[str, ...]]  # gender -> names
    middle_names: dict[str, tuple[str, ...]]
    last_names: tuple[str, ...]
    cities: tuple[str, ...]
    universities: tuple[str, ...]
    majors: tuple[str, ...]
    companies: dict[str, str]  # company -> headquarters city

    def field_values(self, field: str) -> tuple[str, ...] | None:
        """Every value a field can take; ``None`` for birth dates, which are drawn."""
        return {
            "birth_city": self.cities,
            "university": self.universities,
            "major": self.majors,
            "employer": tuple(self.companies),
            "company_city": tuple(sorted(set(self.companies.values()))),
        }.get(field)

    def sizes(self) -> dict[str, int]:
        return {
            "first_names": sum(len(v) for v in self.first_names.values()),
            "middle_names": sum(len(v) for v in self.middle_names.values()),
            "last_names": len(self.last_names),
            "birth_city": len(self.cities),
            "university": len(self.universities),
            "major": len(self.majors),
            "employer": len(self.companies),
            "company_city": len(self.field_values("company_city")),
        }

    def name_capacity(self) -> int:
        return sum(
            len(self.first_names[g]) * len(self.middle_names[g]) * len(self.last_names) for g in self.first_names
        )


def _read_lines(name: str) -> list[str]:
    text = resources.files("engram_data").joinpath("pools", name).read_text("utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _read_tsv(name: str) -> list[list[str]]:
    return [line.split("\t") for line in _read_lines(name)[1:]]


def load_pools() -> Pools:
    def by_gender(rows: list[list[str]]) -> dict[str, tuple[str, ...]]:
        return {g: tuple(n for n, gg in rows if gg == g) for g in ("male", "female")}

    return Pools(
        first_names=by_gender(_read_tsv("first_names.tsv")),
        middle_names=by_gender(_read_tsv("middle_names.tsv")),
        last_names=tuple(_read_lines("last_names.txt")),
        cities=tuple(_read_lines("cities.txt")),
        universities=tuple(_read_lines("universities.txt")),
        majors=tuple(_read_lines("majors.txt")),
        companies={c: city for c, city in _read_tsv("companies.tsv")},
    )
