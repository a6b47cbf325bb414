"""Write the small NER corpus the spans tests and benchmark use: `train.jsonl` and `heldout.jsonl`.

No labelled NER corpus is available offline, so this one is generated: sentence templates filled from
name lists, seeded, with Person / Organization / Location labels (the project's names, not spaCy's).
To measure generalization rather than memory, the held-out file uses names, organizations and places
that never occur in training, and a third of its templates are held-out only. Hard cases are mixed in
on purpose: accents, CJK, emoji (multi-codepoint ones too), tabs, newlines, multi-sentence texts,
texts with no entity, and words that are a person in one sentence and a place in another (Jordan).

Run: .venv/bin/python tests/data/ner/make_ner_data.py   (rewrites both files; deterministic)
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent

FIRST = [
    "Alice", "Bob", "Maria", "José", "Zoë", "Søren", "François", "Małgorzata", "Björn", "Chloé", "Ólafur",
    "İlker", "Priya", "Kwame", "Aiko", "Dmitri", "Fatima", "Liam", "Noor", "Mateo", "Ingrid", "Tomás",
    "Amara", "Hiroshi", "Elena", "Rafael", "Siobhán", "Yusuf", "Greta", "Diego", "Anya", "Jürgen", "Leïla",
    "Oluwaseun", "Camille", "Henrik", "Mei", "Arjun", "Beatriz", "Nikolai", "Sven", "Rosa", "Emeka",
    "Hana", "Lucas", "Ewa", "Khalid", "Marta", "Pedro", "Astrid",
]
LAST = [
    "García", "Ångström", "Nguyễn", "Müller", "O'Brien", "Kowalski", "Dubois", "Okafor", "Tanaka", "Ivanova",
    "Haddad", "Lindqvist", "Fernández", "Sato", "Mensah", "Novák", "Rossi", "Schmidt", "Petrov", "Yılmaz",
    "Santos", "Kim", "Johansson", "Moreau", "Adeyemi", "Costa", "Papadopoulos", "Horvath", "Brennan",
    "Van der Berg", "Nakamura", "Østergaard", "Singh", "Abara", "Castillo", "Weiß", "Dalton", "Lefèvre",
    "Bianchi", "Kaur",
]
CJK_PEOPLE = ["王伟", "李娜", "张敏", "山田太郎", "佐藤花子", "김민준"]
ORGS = [
    "Acme Corporation", "Nordwind GmbH", "Banco Solaris", "Helix Labs", "Crédit Lumière", "Orion Systems",
    "Bluefin Analytics", "Société Générale du Rail", "Kestrel Aerospace", "Mühlberg AG", "Pacific Freight Co.",
    "World Health Organization", "Greenleaf Foods", "Tanaka Heavy Industries", "Stellar Bank",
    "Riverside University", "Quantum Dynamics Inc.", "Atlas Insurance", "Northwind Traders", "Vega Motors",
    "Copperline Media", "Blue Harbor Capital", "Aurora Pharmaceuticals", "Zenith Telecom", "Maple Leaf Airlines",
    "Ironclad Security", "Silverlake Partners", "Polaris Energy", "Evergreen Logistics", "Falcon Robotics",
    "株式会社ミライ", "Café Noir Ltd", "Summit Health", "Redwood Software", "Lumen Bank",
]
PLACES = [
    "Paris", "Zürich", "São Paulo", "Kraków", "Reykjavík", "Montréal", "Málaga", "Lagos", "Nairobi", "Osaka",
    "Berlin", "Lisbon", "Toronto", "Mumbai", "Istanbul", "Helsinki", "Buenos Aires", "Cape Town", "Seoul",
    "Düsseldorf", "Gdańsk", "Québec", "Oslo", "Chile", "Norway", "Brazil", "Kenya", "Vietnam", "Portugal",
    "New Zealand", "東京", "北京", "Bogotá", "Valparaíso", "Marrakesh", "Tromsø", "Ljubljana", "Athens",
    "Vancouver", "Edinburgh",
]
AMBIGUOUS_PER = ["Jordan", "Chelsea", "Georgia", "Florence", "Sydney"]  # also places

# Templates: {P} person, {O} organization, {L} location. Shared ones appear in both files.
SHARED = [
    "{P} joined {O} last spring.",
    "{P} flew from {L} to {L} on Monday.",
    "{O} opened a new office in {L}.",
    "According to {P}, {O} will double its staff.",
    "{P} and {P} met in {L} to sign the deal.",
    "The CEO of {O}, {P}, resigned yesterday.",
    "{O} announced record profits.",
    "Officials in {L} confirmed the report.",
    "{P} said the weather in {L} was terrible.",
    "Shares of {O} fell after {P} left the board.",
    "{P} grew up in {L} before moving to {L}.",
    "A spokesperson for {O} declined to comment.",
    "{P} thanked {P} for the help.",
    "{O} and {O} agreed to merge.",
    "Tourists crowded the streets of {L}.",
    "{P} works at {O} in {L}.",
    "We visited {L} with {P} 🎉",
    "Meeting notes:\n{P} will call {O} tomorrow.\nBudget review in {L}.",
    "{P}\t{O}\t{L}",
    "Thanks {P}! See you in {L} 👍🏽",
]
HELD_OUT_ONLY = [
    "Yesterday {P} told reporters that {O} had left {L}.",
    "In {L}, {O} hired {P} as chief engineer.",
    "{P} (of {O}) spoke at the summit in {L}.",
    "Letter from {P} to {O}:\n\tplease ship the parts to {L}.",
    "👩‍👩‍👧 {P} and her family moved to {L}.",
    "Both {O} and {P} praised the new stadium in {L}.",
    "{L} 🇫🇷 welcomed {P} on a state visit.",
]
NO_ENTITY = [
    "The meeting was moved to next week.",
    "Please send the report before lunch.",
    "it rained all day and nobody came 😞",
    "Prices went up again this quarter.",
    "See the attached file.\nThanks!",
    "The new policy takes effect immediately.",
    "Nothing to report today.",
    "We should order more coffee ☕.",
]
AMBIGUOUS = [  # Jordan the person vs Jordan the country: context decides
    ("{A} scored twice for {O}.", "Person"),
    ("{A} thanked {P} for the advice.", "Person"),
    ("The border between {A} and {L} reopened.", "Location"),
    ("{P} spent a week in {A}.", "Location"),
]


def _split(pool: list[str], rng: random.Random, frac: float = 0.7) -> tuple[list[str], list[str]]:
    shuffled = pool[:]
    rng.shuffle(shuffled)
    cut = int(len(shuffled) * frac)
    return shuffled[:cut], shuffled[cut:]


def _person(rng: random.Random, first: list[str], last: list[str], cjk: list[str]) -> str:
    roll = rng.random()
    if roll < 0.08 and cjk:
        return rng.choice(cjk)
    if roll < 0.2:
        return rng.choice(first)
    return f"{rng.choice(first)} {rng.choice(last)}"


def _fill(template: str, rng: random.Random, pools: dict[str, list[str]], extra: dict | None = None):
    """Fill a template left to right, recording each entity's character offsets."""
    text, spans, pos = "", [], 0
    for m in re.finditer(r"\{([POLA])\}", template):
        text += template[pos : m.start()]
        key = m.group(1)
        if key == "A":
            value, label = extra["A"]
        elif key == "P":
            value, label = _person(rng, pools["first"], pools["last"], pools["cjk"]), "Person"
        elif key == "O":
            value, label = rng.choice(pools["orgs"]), "Organization"
        else:
            value, label = rng.choice(pools["places"]), "Location"
        start = len(text)
        text += value
        spans.append([start, start + len(value), label])
        pos = m.end()
    text += template[pos:]
    return text, spans


def make(n: int, templates: list[str], pools: dict[str, list[str]], rng: random.Random) -> list[dict]:
    rows = []
    while len(rows) < n:
        roll = rng.random()
        if roll < 0.07:
            rows.append({"text": rng.choice(NO_ENTITY), "spans": []})
            continue
        if roll < 0.13:
            template, label = rng.choice(AMBIGUOUS)
            text, spans = _fill(template, rng, pools, {"A": (rng.choice(AMBIGUOUS_PER), label)})
        else:
            text, spans = _fill(rng.choice(templates), rng, pools)
        if rng.random() < 0.1:  # two sentences in one task, on two lines
            more, more_spans = _fill(rng.choice(templates), rng, pools)
            offset = len(text) + 1
            text += "\n" + more
            spans += [[s + offset, e + offset, lb] for s, e, lb in more_spans]
        for s, e, _ in spans:
            assert text[s:e] == text[s:e].strip() and text[s:e]
        rows.append({"text": text, "spans": spans})
    return rows


def main() -> None:
    rng = random.Random(20261121)
    first_tr, first_te = _split(FIRST, rng)
    last_tr, last_te = _split(LAST, rng)
    cjk_tr, cjk_te = _split(CJK_PEOPLE, rng, 0.5)
    orgs_tr, orgs_te = _split(ORGS, rng)
    places_tr, places_te = _split(PLACES, rng)
    train_pools = {"first": first_tr, "last": last_tr, "cjk": cjk_tr, "orgs": orgs_tr, "places": places_tr}
    test_pools = {"first": first_te, "last": last_te, "cjk": cjk_te, "orgs": orgs_te, "places": places_te}
    train = make(400, SHARED, train_pools, rng)
    heldout = make(200, SHARED + HELD_OUT_ONLY * 2, test_pools, rng)
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        with open(HERE / name, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} texts, {sum(len(r['spans']) for r in rows)} spans")


if __name__ == "__main__":
    main()
