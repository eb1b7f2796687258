#!/usr/bin/env python3
"""Generates the labelled corpus the detectors are measured on
(tests/detect.rs): planted.jsonl, identifiers planted in text shaped like
real traffic (URLs, notes, titles, search terms, referrers), and clean.jsonl,
values that hold none (order ids, SKUs, GTINs, ISBNs, timestamps, prices,
versions, UUIDs, digests, fbc/fbp, click ids, tracking numbers, URLs).

Deterministic (seeded). Each planted phone number is checked valid by the
Python port of libphonenumber, independently of the Rust crate under test:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install phonenumbers
    /tmp/venv/bin/python tests/data/scan/generate.py
"""

import hashlib
import json
import os
import random
import string
import urllib.parse
import uuid

import phonenumbers

rng = random.Random(20261202)
here = os.path.dirname(os.path.abspath(__file__))

FIRST = ["jane", "john", "maria", "li", "ahmed", "zoe", "olga", "kenji", "amara", "lucas", "noah", "emma", "sofia", "mateo", "chloe"]
LAST = ["doe", "smith", "garcia", "wang", "khan", "obrien", "ivanova", "tanaka", "okafor", "martin", "muller", "rossi", "silva"]
DOMAINS = ["gmail.com", "example.com", "mail.example.co.uk", "shop.example.org", "firma.de", "outlook.fr", "yahoo.co.jp", "bakery.example.net", "uni.example.edu", "proton.me"]


def email():
    first, last = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice([
        f"{first}.{last}", f"{first}_{last}", f"{first[0]}{last}", f"{first}{rng.randint(1, 9999)}",
        f"{first}.{last}+{rng.choice(['ads', 'shop', 'news'])}", f"{last}-{first}",
    ])
    if rng.random() < 0.2:
        local = local.capitalize()
    return f"{local}@{rng.choice(DOMAINS)}"


US_AREAS = [201, 202, 206, 212, 213, 214, 303, 305, 312, 313, 404, 408, 415, 469, 503, 512, 602, 617, 650, 702, 713, 720, 773, 801, 818, 917, 919, 949, 972]


def us_phone():
    while True:
        area = rng.choice(US_AREAS)
        exchange = rng.randint(200, 999)
        line = rng.randint(0, 9999)
        if exchange % 100 == 11 or exchange == 555:
            continue
        number = phonenumbers.parse(f"+1{area}{exchange}{line:04d}")
        if phonenumbers.is_valid_number(number):
            break
    form = rng.choice(["({a}) {e}-{l}", "{a}-{e}-{l}", "{a}.{e}.{l}", "{a} {e} {l}", "+1 {a}-{e}-{l}", "+1 ({a}) {e}-{l}", "+1{a}{e}{l}"])
    return form.format(a=area, e=exchange, l=f"{line:04d}")


INTERNATIONAL = [
    ("GB", "+44 20 7946 {:04d}"), ("GB", "+44 7700 9{:05d}"), ("DE", "+49 30 {:08d}"),
    ("DE", "+49 151 {:08d}"), ("FR", "+33 6 {:02d} {:02d} {:02d} {:02d}"), ("FR", "+33 1 42 {:02d} {:02d} {:02d}"),
    ("AU", "+61 4{:02d} {:03d} {:03d}"), ("IN", "+91 98{:03d} {:05d}"), ("BR", "+55 11 9{:04d}-{:04d}"),
    ("JP", "+81 90-{:04d}-{:04d}"), ("ES", "+34 6{:02d} {:03d} {:03d}"), ("IT", "+39 3{:02d} {:03d} {:04d}"),
    ("NL", "+31 6 {:08d}"), ("MX", "+52 55 {:04d} {:04d}"),
]


def intl_phone():
    while True:
        _, pattern = rng.choice(INTERNATIONAL)
        groups = pattern.count("{")
        widths = [int(part.split("d}")[0][-1]) for part in pattern.split("{:0")[1:]]
        text = pattern.format(*[rng.randint(0, 10 ** w - 1) for w in widths[:groups]])
        number = phonenumbers.parse(text)
        if phonenumbers.is_valid_number(number):
            return text


def phone():
    return us_phone() if rng.random() < 0.5 else intl_phone()


def luhn_digit(digits):
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = int(d)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


CARD_PREFIXES = [("4", 16), ("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("3528", 16), ("62", 16), ("4", 19)]


def card():
    prefix, length = rng.choice(CARD_PREFIXES)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    number = body + luhn_digit(body)
    style = rng.choice(["plain", "spaces", "dashes"])
    if length == 15:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i:i + 4] for i in range(0, length, 4)]
    return {"plain": number, "spaces": " ".join(groups), "dashes": "-".join(groups)}[style]


IBAN_FORMATS = [("DE", "n18"), ("FR", "n23"), ("GB", "a4n14"), ("NL", "a4n10"), ("ES", "n20"), ("IT", "a1n22"), ("BE", "n12"), ("AT", "n16"), ("CH", "n17"), ("PL", "n24")]


def iban():
    country, spec = rng.choice(IBAN_FORMATS)
    bban = ""
    for kind, count in [(spec[i], int(spec[i + 1:].split("a")[0].split("n")[0])) for i in range(len(spec)) if spec[i] in "an"]:
        pool = string.ascii_uppercase if kind == "a" else string.digits
        bban += "".join(rng.choice(pool) for _ in range(count))
    rearranged = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    check = 98 - int(numeric) % 97
    number = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(number[i:i + 4] for i in range(0, len(number), 4))
    return number


def ssn():
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def in_url(value, kind):
    """The identifier as it appears inside a URL's query string."""
    if kind == "email":
        return urllib.parse.quote(value, safe="") if rng.random() < 0.6 else value
    if kind == "phone":
        return value.replace("+", "%2B").replace(" ", "-")
    return value.replace(" ", "")


PLACES = {
    "url": lambda v: f"https://shop.example/checkout/confirm?step=3&contact={v}&utm_source=newsletter&utm_medium=email",
    "referrer": lambda v: f"https://mail.example.com/inbox?msg=8812&to={v}",
    "note": lambda v: rng.choice([f"Please call me at {v} after 5pm", f"Leave at the door. Questions: {v}", f"Gift for my mum, contact {v}.", f"{v}"]),
    "title": lambda v: rng.choice([f"Birthday cake for {v}", f"Custom engraving: {v}", f"Order for {v} (pickup)"]),
    "search": lambda v: rng.choice([f"{v}", f"order status {v}", f"{v} refund"]),
}

GENERATORS = {"email": email, "phone": phone, "card": card, "iban": iban, "ssn": ssn}


def planted():
    rows = []
    for kind, make in GENERATORS.items():
        for i in range(450):
            value = make()
            place = list(PLACES)[i % len(PLACES)]
            if place in ("url", "referrer"):
                value = in_url(value, kind)
            text = PLACES[place](value)
            rows.append({"detector": kind, "place": place, "value": value, "text": text})
    return rows


def ean(digits):
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(reversed(digits)))
    return digits + str((10 - total % 10) % 10)


def gtin(length):
    return ean("".join(rng.choice(string.digits) for _ in range(length - 1)))


def isbn13():
    body = rng.choice(["978", "979"]) + "".join(rng.choice(string.digits) for _ in range(9))
    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def b64url(n):
    return "".join(rng.choice(string.ascii_letters + string.digits + "-_") for _ in range(n))


CLEAN = [
    lambda: f"ORD-{rng.randint(2020, 2026)}-{rng.randint(0, 999999):06d}",
    lambda: f"#{rng.randint(100000, 9999999)}",
    lambda: f"SKU-{rng.randint(1000, 9999)}-{rng.choice(['BLK', 'WHT', 'RED'])}-{rng.choice('SML')}",
    lambda: gtin(13), lambda: gtin(12), lambda: gtin(14), lambda: gtin(8), lambda: isbn13(),
    lambda: str(rng.randint(1_600_000_000_000, 1_800_000_000_000)),
    lambda: str(rng.randint(1_600_000_000, 1_800_000_000)),
    lambda: f"{rng.randint(0, 9999)}.{rng.randint(0, 99):02d}",
    lambda: f"{rng.randint(1, 9)},{rng.randint(0, 999):03d}.{rng.randint(0, 99):02d}",
    lambda: f"€ {rng.randint(1, 999)},{rng.randint(0, 99):02d}",
    lambda: f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
    lambda: f"v{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}-beta.{rng.randint(1, 9)}",
    lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    lambda: hashlib.sha256(str(rng.random()).encode()).hexdigest(),
    lambda: hashlib.md5(str(rng.random()).encode()).hexdigest(),
    lambda: f"fb.1.{rng.randint(1_600_000_000_000, 1_800_000_000_000)}.{rng.randint(1_000_000_000, 9_999_999_999)}",
    lambda: f"fb.1.{rng.randint(1_600_000_000_000, 1_800_000_000_000)}.IwAR{b64url(40)}",
    lambda: f"Cj0KCQiA{b64url(60)}",
    lambda: f"E.C.P.{b64url(30)}",
    lambda: "".join(rng.choice("0123456789abcdef") for _ in range(32)),
    lambda: f"1Z{''.join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))}",
    lambda: "".join(rng.choice(string.digits) for _ in range(12)),
    lambda: "9400" + "".join(rng.choice(string.digits) for _ in range(18)),
    lambda: "".join(rng.choice(string.digits) for _ in range(10)),
    lambda: f"{rng.randint(2020, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    lambda: f"{rng.randint(2020, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
    lambda: f"{rng.randint(2020, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
    lambda: f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1950, 2026)}",
    lambda: f"{rng.randint(10000, 99999)}-{rng.randint(1000, 9999)}",
    lambda: f"https://shop.example/p/{rng.randint(1, 99999)}?utm_source=google&utm_medium=cpc&utm_campaign=winter_{rng.randint(1, 99)}&gclid=Cj0KCQiA{b64url(40)}",
    lambda: f"https://bakery.example/products/sourdough-{rng.randint(1, 999)}?variant={rng.randint(10**12, 10**13)}",
    lambda: f"https://www.example.com/search?q=gluten+free+bread&page={rng.randint(1, 20)}",
    lambda: f"{rng.randint(1, 500)} x {rng.choice(['Croissant', 'Baguette', 'Sourdough'])}",
    lambda: f"Batch {rng.randint(1, 99)}/{rng.randint(2020, 2026)}, lot {rng.randint(100000, 999999)}",
    lambda: f"{rng.randint(1, 9)} {rng.randint(100, 999)} {rng.randint(100, 999)}",
    lambda: f"logo@{rng.randint(2, 3)}x.png",
    lambda: f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/{rng.randint(100, 140)}.0.{rng.randint(1000, 9999)}.{rng.randint(10, 200)} Safari/537.36",
]


def clean():
    return [{"text": CLEAN[i % len(CLEAN)]()} for i in range(12000)]


def write(name, rows):
    with open(os.path.join(here, name), "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


write("planted.jsonl", planted())
write("clean.jsonl", clean())
