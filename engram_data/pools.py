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
            "first_names": len(set().union(*self.first_names.values())),
            "middle_names": len(set().union(*self.middle_names.values())),
            "last_names": len(self.last_names),
            "birth_city": len(self.cities),
            "university": len(self.universities),
            "major": len(self.majors),
            "employer": len(self.companies),
            "company_city": len(self.field_values("company_city")),
        }

    def name_capacity(self) -> int:
        if self.first_names["male"] == self.first_names["female"]:  # one list for both (the authors' layout)
            return len(self.first_names["male"]) * len(self.middle_names["male"]) * len(self.last_names)
        return sum(
            len(self.first_names[g]) * len(self.middle_names[g]) * len(self.last_names) for g in self.first_names
        )


# The authors' published field lists (facebookresearch/PhysicsLM4,
# data-synthetic-pretrain/Capo-bioS-bioR/fields/): one value a line; company.txt holds
# "Company; City, ST". Their names carry no gender.
AUTHOR_FILES = {
    "first_names": "first_name.txt",
    "middle_names": "middle_name.txt",
    "last_names": "last_name.txt",
    "cities": "city.txt",
    "universities": "university.txt",
    "majors": "field.txt",
    "companies": "company.txt",
}


def load_author_pools(folder) -> Pools:
    """Pools from a folder in the authors' layout (``--fields-dir``). A missing file, an empty
    one or a company line without "; City" is a DataError naming the file and line."""
    from pathlib import Path

    from engram_data.contract import DataError

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"--fields-dir {folder} is not a folder; pass the authors' fields/ folder")
    lists = {}
    for key, name in AUTHOR_FILES.items():
        path = folder / name
        try:
            lines = [line.strip() for line in path.read_text("utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(
                f"--fields-dir: cannot read {path} ({type(exc).__name__}); it needs {', '.join(AUTHOR_FILES.values())}"
            ) from None
        lists[key] = tuple(dict.fromkeys(line for line in lines if line))  # each value once, in file order
        if len(lists[key]) < 4:
            raise DataError(
                f"--fields-dir: {path} has {len(lists[key])} values; every list needs at least 4 (the options)"
            )
    companies = {}
    for i, line in enumerate(lists.pop("companies"), 1):
        company, sep, city = (part.strip() for part in line.partition(";"))
        if not sep or not company or not city:
            raise DataError(
                f"--fields-dir: {folder / AUTHOR_FILES['companies']} line {i} is {line!r}; write 'Company; City, ST'"
            )
        companies[company] = city
    both = lambda names: {"male": names, "female": names}  # noqa: E731 (no gender in these lists)
    return Pools(
        first_names=both(lists.pop("first_names")),
        middle_names=both(lists.pop("middle_names")),
        companies=companies,
        **lists,
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
