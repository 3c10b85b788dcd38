from pathlib import Path

import pytest

from services.routing.knowledge import (
    PROFILES_DIR,
    ROUTABLE,
    ProfileError,
    load_knowledge,
    parse_profile,
)

SOURCE = '[[source]]\nid = "duties"\ntitle = "主要职责"\nurl = "https://example.org/duties"\n'


def profile(department: str, entries: str, sources: str = SOURCE) -> str:
    return f'department = "{department}"\n{sources}{entries}'


def entry(zh: str = '"食品安全"', en: str = '"food safety"', source: str = "duties") -> str:
    return f'[[entry]]\nmatter = "m"\nsource = "{source}"\nzh = [{zh}]\nen = [{en}]\n'


def test_an_entry_keeps_its_department_source_and_normalised_terms() -> None:
    [found] = parse_profile(
        profile("tj-market", entry('"食品安全", "ＡＢＣ超市"', '"Food  Safety"')), "f"
    )

    assert found.department == "tj-market"
    assert found.source == "duties"
    assert found.terms == ("食品安全", "abc超市", "food safety")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (profile("tj-nowhere", entry()), "unknown department"),
        (profile("park-supervision", entry()), "never a routing target"),
        (profile("tj-market", entry(source="elsewhere")), "not declared"),
        (profile("tj-market", entry(zh='"食"')), "at least two characters"),
        (profile("tj-market", entry(en='"ab"')), "at least three letters"),
        (profile("tj-market", entry() + entry()), "twice"),
        (profile("tj-market", entry(zh='"价格"', en='"Price", "price"')), "twice"),
        (profile("tj-market", entry(), sources=""), "declares no"),
        (profile("tj-market", ""), "has no"),
        (
            profile("tj-market", entry() + "[[entry]]\nmatter = 'x'\nsource = 'duties'\n"),
            "no terms",
        ),
        (profile("tj-market", entry().replace("matter", "subject")), "unknown keys"),
        ('department = "tj-market"\n[[source]]\nid = "x"\ntitle = "t"\n' + entry(), "url or"),
        ("department = ", "not valid TOML"),
    ],
)
def test_a_bad_profile_is_refused_naming_the_file(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message) as refused:
        parse_profile(text, "tj-market.toml")

    assert str(refused.value).startswith("tj-market.toml")


def test_a_file_must_be_named_after_its_department() -> None:
    with pytest.raises(ProfileError, match="named 'tj-tax'"):
        parse_profile(profile("tj-market", entry()), "tj-tax.toml", expected="tj-tax")


def every_department(directory: Path, overrides: dict[str, str]) -> None:
    for code in ROUTABLE:
        text = overrides.get(code) or profile(code, entry(f'"{code}事项"', f'"{code} matter"'))
        (directory / f"{code}.toml").write_text(text, encoding="utf-8")


def test_a_term_two_departments_claim_is_a_conflict(tmp_path: Path) -> None:
    every_department(
        tmp_path,
        {
            "tj-housing": profile("tj-housing", entry('"物业服务"', '"landlord"')),
            "park-property": profile("park-property", entry('"物业服务"', '"air conditioning"')),
        },
    )

    with pytest.raises(ProfileError, match="'物业服务' is claimed by both"):
        load_knowledge(tmp_path)


def test_every_routable_department_needs_a_profile(tmp_path: Path) -> None:
    every_department(tmp_path, {})
    (tmp_path / "zgc-ip.toml").unlink()

    with pytest.raises(ProfileError, match="no profile for \\['zgc-ip'\\]"):
        load_knowledge(tmp_path)


def test_the_digest_follows_the_content(tmp_path: Path) -> None:
    every_department(tmp_path, {})
    before = load_knowledge(tmp_path).digest
    (tmp_path / "tj-tax.toml").write_text(profile("tj-tax", entry('"发票丢了"', '"lost invoice"')))

    assert load_knowledge(tmp_path).digest != before


def test_the_shipped_profiles_cover_each_department_s_remit_widely() -> None:
    knowledge = load_knowledge(PROFILES_DIR)

    assert knowledge.departments() == ROUTABLE
    for code in ROUTABLE:
        terms = knowledge.terms_of(code)
        assert len(terms) >= 200, f"{code} has {len(terms)} terms"
        assert any(not term.isascii() for term in terms)
        assert any(t.isascii() for t in terms)
