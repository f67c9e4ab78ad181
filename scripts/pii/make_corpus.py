#!/usr/bin/env python3
"""Generate the labelled PII corpus of customer-feedback sentences.

    python3 scripts/pii/make_corpus.py [--seed 4] [--count 2400] [--out crates/feedback/tests/data/pii_corpus.jsonl]

Deterministic (seeded, no network). One JSON object per line:
{"text": "...", "entities": [{"type": "EMAIL_ADDRESS", "start": i, "end": j}]} with character
offsets (Python str indices). Every entity type appears in several formats (phones and IBANs of
several countries), some sentences hold several entities, about 40% hold none, and many hold
look-alikes that must NOT be reported: card-like numbers failing Luhn, IBAN-like strings failing
mod-97, dates, times, order, invoice and tracking numbers, versions, prices, quantities,
barcodes, SSN-like numbers with never-issued areas, NINO-like strings with excluded prefixes.
Test cards and IBANs are generated with correct check digits computed here.

Labelling rules: the span is the value itself, without surrounding brackets or punctuation; a
port after an IPv4 address (`10.0.0.1:8080`) is not part of the address; the `(0)` of
`+44 (0)20 …` is part of the phone number.
"""

import argparse
import json
import random
import string

# ---------------------------------------------------------------------------------------------
# Check digits


def luhn_complete(body):
    """body + the Luhn check digit."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def luhn_ok(number):
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_numeric(s):
    return "".join(str(int(c, 36)) for c in s)


def iban_complete(country, bban):
    check = 98 - int(iban_numeric(bban + country + "00")) % 97
    return f"{country}{check:02d}{bban}"


def iban_ok(iban):
    iban = iban.replace(" ", "").upper()
    return int(iban_numeric(iban[4:] + iban[:4])) % 97 == 1


def group(s, size=4, sep=" "):
    return sep.join(s[i:i + size] for i in range(0, len(s), size))


def group_sizes(s, sizes, sep):
    out, at = [], 0
    for n in sizes:
        out.append(s[at:at + n])
        at += n
    return sep.join(out)


# ---------------------------------------------------------------------------------------------
# Generators of values


class Gen:
    def __init__(self, rng):
        self.r = rng

    def digits(self, n, first=None):
        s = "".join(self.r.choice(string.digits) for _ in range(n))
        if first is not None:
            s = self.r.choice(first) + s[1:]
        return s

    # -- e-mail -----------------------------------------------------------------------------
    FIRST = ["anna", "ben", "carlos", "dana", "emeka", "fatima", "georg", "hana", "ivan", "julia",
             "kenji", "lena", "mohammed", "nadia", "oliver", "priya", "quentin", "rosa", "sven",
             "tariq", "uma", "victor", "wei", "ximena", "yusuf", "zoe"]
    LAST = ["smith", "garcia", "mueller", "dubois", "rossi", "tanaka", "kumar", "silva", "nguyen",
            "kowalski", "obrien", "jensen", "haddad", "novak", "costa", "ivanova"]
    DOMAINS = ["gmail.com", "yahoo.co.uk", "outlook.com", "web.de", "orange.fr", "example.org",
               "acme-corp.com", "mail.example.co.jp", "uni-heidelberg.de", "proton.me",
               "company.com.br", "icloud.com", "sub.domain.example.net", "hotmail.fr"]

    def email(self):
        f, l, d = self.r.choice(self.FIRST), self.r.choice(self.LAST), self.r.choice(self.DOMAINS)
        style = self.r.randrange(9)
        if style == 0:
            local = f"{f}.{l}"
        elif style == 1:
            local = f"{f}_{l}{self.r.randrange(100)}"
        elif style == 2:
            local = f"{f}+{self.r.choice(['orders', 'shop', 'news'])}"
        elif style == 3:
            local = f"{f[0]}{l}"
        elif style == 4:
            local = f"{f.capitalize()}.{l.capitalize()}"
        elif style == 5:
            local = f"{l}-{f}"
        elif style == 6:
            local = f"{f}{self.r.randrange(1970, 2010)}"
        elif style == 7:
            local = self.r.choice(["josé.garcía", "müller.jörg", "françois"])
        else:
            local = f"{f}.{l}.{self.r.randrange(10)}"
        addr = f"{local}@{d}"
        return addr.upper() if self.r.random() < 0.04 else addr

    # -- phones -------------------------------------------------------------------------------
    def phone(self):
        country = self.r.choice(["US", "US", "UK", "UK", "DE", "FR", "IN", "AU", "BR", "JP", "E164"])
        return getattr(self, "phone_" + country.lower())()

    def us_parts(self):
        area = self.r.choice(["201", "212", "213", "305", "312", "415", "503", "617", "646", "702",
                              "713", "808", "917", "604", "416", "514"])
        exch = self.r.choice(["555", self.digits(3, "23456789")])
        return area, exch, self.digits(4)

    def phone_us(self):
        a, e, s = self.us_parts()
        return self.r.choice([
            f"({a}) {e}-{s}", f"{a}-{e}-{s}", f"{a}.{e}.{s}", f"+1 {a} {e} {s}",
            f"+1-{a}-{e}-{s}", f"1-{a}-{e}-{s}", f"+1 ({a}) {e}-{s}", f"{a} {e} {s}",
            f"1-800-{e}-{s}", f"+1.{a}.{e}.{s}",
        ])

    def phone_uk(self):
        london = f"7946 0{self.digits(3)}"
        mobile = f"7700 900{self.digits(3)}"
        manc = f"161 496 0{self.digits(3)}"
        return self.r.choice([
            f"020 {london}", f"0{mobile}", f"+44 20 {london}", f"+44 (0)20 {london}",
            f"+44 {mobile}", f"0{manc}", f"+44 {manc}", f"07700 900{self.digits(3)}",
            f"0044 20 {london}", f"(020) {london}",
        ])

    def phone_de(self):
        return self.r.choice([
            f"030 {self.digits(8, '123456789')}", f"+49 30 {self.digits(8, '123456789')}",
            f"0151 {self.digits(8)}", f"+49 151 {self.digits(8)}", f"(030) {self.digits(7, '123456789')}",
            f"0171/{self.digits(7)}", f"+49 (0)89 {self.digits(7, '123456789')}",
            f"089 {self.digits(3, '123456789')} {self.digits(4)}", f"+49 1512 {self.digits(7)}",
        ])

    def phone_fr(self):
        pairs = " ".join(self.digits(2) for _ in range(4))
        dotted = ".".join(self.digits(2) for _ in range(4))
        lead = self.r.choice("1234567")
        return self.r.choice([
            f"0{lead} {pairs}", f"0{lead}.{dotted}", f"+33 {lead} {pairs}", f"+33 (0){lead} {pairs}",
            f"0{lead}-{pairs.replace(' ', '-')}",
        ])

    def phone_in(self):
        a, b = self.digits(5, "6789"), self.digits(5)
        return self.r.choice([f"+91 {a} {b}", f"{a} {b}", f"+91-{a}-{b}", f"+91 {a}{b}",
                              f"011 {self.digits(4, '23456789')} {self.digits(4)}"])

    def phone_au(self):
        return self.r.choice([
            f"04{self.digits(2)} {self.digits(3)} {self.digits(3)}",
            f"(02) {self.digits(4, '3456789')} {self.digits(4)}",
            f"+61 4{self.digits(2)} {self.digits(3)} {self.digits(3)}",
            f"+61 2 {self.digits(4, '3456789')} {self.digits(4)}",
            f"(03) {self.digits(4, '3456789')} {self.digits(4)}",
        ])

    def phone_br(self):
        ddd = self.r.choice(["11", "21", "31", "41", "51", "61", "71", "81"])
        mob = f"9{self.digits(4)}-{self.digits(4)}"
        land = f"{self.digits(4, '2345')}-{self.digits(4)}"
        return self.r.choice([f"({ddd}) {mob}", f"+55 {ddd} {mob}", f"({ddd}) {land}",
                              f"+55 ({ddd}) {mob}", f"{ddd} {mob}"])

    def phone_jp(self):
        return self.r.choice([
            f"03-{self.digits(4)}-{self.digits(4)}", f"090-{self.digits(4)}-{self.digits(4)}",
            f"+81 3-{self.digits(4)}-{self.digits(4)}", f"+81 90-{self.digits(4)}-{self.digits(4)}",
            f"06-{self.digits(4)}-{self.digits(4)}", f"+81 80 {self.digits(4)} {self.digits(4)}",
        ])

    def phone_e164(self):
        a, e, s = self.us_parts()
        return self.r.choice([
            f"+1{a}{e}{s}", f"+447700900{self.digits(3)}", f"+49151{self.digits(8)}",
            f"+336{self.digits(8)}", f"+91{self.digits(10, '6789')}", f"+614{self.digits(8)}",
            f"+55119{self.digits(8)}", f"+8190{self.digits(8)}", f"+34 6{self.digits(2)} {self.digits(3)} {self.digits(3)}",
            f"+39 3{self.digits(2)} {self.digits(7)}", f"+31 6 {self.digits(8)}",
        ])

    # -- cards --------------------------------------------------------------------------------
    def card_digits(self):
        brand = self.r.choice(["visa", "visa", "visa13", "visa19", "mc", "mc2", "amex", "discover",
                               "diners", "jcb", "unionpay", "maestro"])
        if brand == "visa":
            body = "4" + self.digits(14)
        elif brand == "visa13":
            body = "4" + self.digits(11)
        elif brand == "visa19":
            body = "4" + self.digits(17)
        elif brand == "mc":
            body = self.r.choice(["51", "52", "53", "54", "55"]) + self.digits(13)
        elif brand == "mc2":
            body = str(self.r.randrange(2221, 2721)) + self.digits(11)
        elif brand == "amex":
            body = self.r.choice(["34", "37"]) + self.digits(12)
        elif brand == "discover":
            body = self.r.choice(["6011", "6440", "6500", "6591"]) + self.digits(11)
        elif brand == "diners":
            body = self.r.choice(["300", "301", "305", "36", "38"])
            body += self.digits(13 - len(body))
        elif brand == "jcb":
            body = str(self.r.randrange(3528, 3590)) + self.digits(11)
        elif brand == "unionpay":
            body = "62" + self.digits(self.r.choice([13, 16]))
        else:
            body = self.r.choice(["5018", "5020", "5038", "6304", "6759"]) + self.digits(self.r.choice([11, 14]))
        return brand, luhn_complete(body)

    def format_card(self, brand, num):
        n = len(num)
        style = self.r.randrange(4)
        if style == 0:
            return num
        sep = " " if style in (1, 3) else "-"
        if brand == "amex" and n == 15:
            return group_sizes(num, [4, 6, 5], sep)
        if brand == "diners" and n == 14:
            return group_sizes(num, [4, 6, 4], sep)
        return group(num, 4, sep)

    def card(self):
        brand, num = self.card_digits()
        assert luhn_ok(num) and 13 <= len(num) <= 19, (brand, num)
        return self.format_card(brand, num)

    def bad_card(self):
        brand, num = self.card_digits()
        last = str((int(num[-1]) + self.r.randrange(1, 10)) % 10)
        bad = num[:-1] + last
        assert not luhn_ok(bad)
        return self.format_card(brand, bad)

    # -- IBAN ---------------------------------------------------------------------------------
    def bban(self, country):
        d, up = self.digits, string.ascii_uppercase
        letters = lambda n: "".join(self.r.choice(up) for _ in range(n))  # noqa: E731
        return {
            "DE": lambda: d(18),
            "GB": lambda: letters(4) + d(14),
            "FR": lambda: d(10) + letters(1) + d(10) + d(2),
            "ES": lambda: d(20),
            "IT": lambda: letters(1) + d(22),
            "NL": lambda: letters(4) + d(10),
            "BE": lambda: d(12),
            "CH": lambda: d(17),
            "AT": lambda: d(16),
            "PL": lambda: d(24),
            "SE": lambda: d(20),
            "NO": lambda: d(11),
            "IE": lambda: letters(4) + d(14),
            "PT": lambda: d(21),
            "BR": lambda: d(23) + letters(1) + d(1),
            "SA": lambda: d(20),
        }[country]()

    def iban_compact(self):
        country = self.r.choice(["DE", "DE", "GB", "GB", "FR", "ES", "IT", "NL", "BE", "CH", "AT",
                                 "PL", "SE", "NO", "IE", "PT", "BR", "SA"])
        return iban_complete(country, self.bban(country))

    def format_iban(self, compact):
        style = self.r.randrange(5)
        if style in (0, 1):
            return compact
        if style == 4 and self.r.random() < 0.3:
            return group(compact).lower()
        return group(compact)

    IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "ES": 24, "IT": 27, "NL": 18, "BE": 16, "CH": 21,
                    "AT": 20, "PL": 28, "SE": 24, "NO": 15, "IE": 22, "PT": 25, "BR": 29, "SA": 24}

    def iban(self):
        compact = self.iban_compact()
        assert iban_ok(compact) and len(compact) == self.IBAN_LENGTHS[compact[:2]], compact
        return self.format_iban(compact)

    def bad_iban(self):
        good = self.iban_compact()
        while True:
            i = self.r.randrange(4, len(good))
            if good[i].isdigit():
                bad = good[:i] + str((int(good[i]) + self.r.randrange(1, 10)) % 10) + good[i + 1:]
                if not iban_ok(bad):
                    return self.format_iban(bad)

    # -- IP -----------------------------------------------------------------------------------
    def ipv4(self):
        r = self.r
        return r.choice([
            f"192.168.{r.randrange(256)}.{r.randrange(1, 255)}",
            f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}",
            f"172.{r.randrange(16, 32)}.{r.randrange(256)}.{r.randrange(1, 255)}",
            f"{r.randrange(1, 224)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}",
            "8.8.8.8", "127.0.0.1", f"203.0.113.{r.randrange(1, 255)}",
        ])

    def ipv6(self):
        r = self.r
        h = lambda: format(r.randrange(1, 0x10000), "x")  # noqa: E731
        full = ":".join(format(r.randrange(0x10000), "04x") for _ in range(8))
        return r.choice([
            f"2001:db8::{h()}:{h()}", f"fe80::{h()}:{h()}:{h()}:{h()}", "::1",
            f"2001:0db8:85a3:0000:0000:8a2e:0370:{format(r.randrange(0x10000), '04x')}",
            f"::ffff:{self.ipv4()}", f"2a00:1450:4001:{h()}::{h()}", full,
            f"2001:DB8:{format(r.randrange(0x10000), 'X')}::{r.randrange(1, 99)}",
        ])

    # -- national ids -------------------------------------------------------------------------
    def ssn_parts(self):
        area = self.r.choice([a for a in range(1, 900) if a != 666])
        return f"{area:03d}", f"{self.r.randrange(1, 100):02d}", f"{self.r.randrange(1, 10000):04d}"

    def bad_ssn(self):
        area = self.r.choice(["000", "666", f"9{self.digits(2)}"])
        _, g, s = self.ssn_parts()
        if self.r.random() < 0.25:
            return f"{self.ssn_parts()[0]}-00-{s}"
        if self.r.random() < 0.2:
            return f"{self.ssn_parts()[0]}-{g}-0000"
        return f"{area}-{g}-{s}"

    NINO_FIRST = [c for c in string.ascii_uppercase if c not in "DFIQUV"]
    NINO_SECOND = [c for c in string.ascii_uppercase if c not in "DFIOQUV"]

    def nino(self):
        while True:
            p = self.r.choice(self.NINO_FIRST) + self.r.choice(self.NINO_SECOND)
            if p not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
                break
        d = self.digits(6)
        sfx = self.r.choice("ABCD")
        return self.r.choice([f"{p}{d}{sfx}", f"{p} {d[:2]} {d[2:4]} {d[4:]} {sfx}", f"{p}{d}{sfx}",
                              f"{p} {d} {sfx}"])

    def bad_nino(self):
        p = self.r.choice(["QQ", "BG", "GB", "NK", "TN", "ZZ", "DA", "FY", "AO", "VA"])
        sfx = self.r.choice("ABCD")
        if self.r.random() < 0.3:
            p, sfx = "AB", self.r.choice("EFGXZ")
        return f"{p}{self.digits(6)}{sfx}"


# ---------------------------------------------------------------------------------------------
# Sentences


OPENERS = ["", "", "Hi, ", "Hello team, ", "Honestly, ", "Update: ", "FYI ", "Quick note: ",
           "Bonjour, ", "Hallo, ", "Ugh. ", "Thanks for the fast reply! "]
CLOSERS = ["", "", "", " Thanks!", " Cheers.", " Please fix this ASAP.", " 5 stars otherwise.",
           " Not happy.", " Merci.", " Danke!", " 🙂", " — sent from my phone"]

TEMPLATES = {
    "EMAIL_ADDRESS": [
        "Please send the receipt to {} instead of my old address.",
        "My account email is {} but the reset link never arrives.",
        "You can reach me at {} if you need more details.",
        "Why did {} get three newsletters in one day?",
        "Change the contact on my order to {}, thanks.",
        "I wrote to support ({}) twice with no answer.",
        "The invoice went to {}; that's my ex-colleague.",
        "Login {} keeps getting locked after the update.",
        "Email: {}",
        "cc {} on the ticket please",
    ],
    "PHONE_NUMBER": [
        "Call me back on {} after 6pm.",
        "My phone number is {} and the courier never called.",
        "The driver rang {} at 7am on a Sunday!",
        "Please update my mobile to {}.",
        "I tried the hotline {} three times, always busy.",
        "You can text me at {} when the parcel is ready.",
        "Tel.: {}",
        "Reach me via WhatsApp {} if easier.",
        "Your agent gave me {} but nobody answers.",
        "Contact: {} (evenings only)",
        "My number changed to {} last month.",
        "Ring {} for the delivery, the doorbell is broken.",
    ],
    "CREDIT_CARD": [
        "I was charged twice on my card {} for the same order.",
        "Card ending... actually the full number is {}, please refund it.",
        "Payment with {} was declined but the money left my account.",
        "Remove the card {} from my profile please.",
        "Why is {} still saved after I deleted it?",
        "Visa {} expired, how do I update it?",
        "Refund to {} never arrived.",
        "I paid with my Amex/Mastercard ({}) and got no confirmation.",
    ],
    "IBAN_CODE": [
        "Please refund to my IBAN {} instead of the card.",
        "The direct debit from {} failed again.",
        "My bank account {} was debited twice.",
        "Transfer the deposit back to {}, merci.",
        "IBAN: {}",
        "Bankverbindung {} bitte aktualisieren.",
        "Is {} the right account for the SEPA mandate?",
    ],
    "IP_ADDRESS": [
        "Your site blocks my IP {} for no reason.",
        "Login attempts from {} were not me!",
        "The router at {} can't reach your API.",
        "I get a 403 when connecting from {}.",
        "Support asked for my address, it is {}.",
        "Strange: the app shows my last login from {}.",
        "Whitelist {} please, our office moved.",
        "Our VPN exit node is {} if that helps.",
    ],
    "US_SSN": [
        "Why does the form ask for my SSN {}?",
        "I typed my social security number {} and it got rejected.",
        "Please delete my SSN ({}) from your records.",
        "The tax form shows {} which is my social security number.",
        "SSN: {}",
    ],
    "UK_NINO": [
        "My National Insurance number is {} for the payroll form.",
        "Please correct my NI number to {}.",
        "The payslip shows {} but that's not my NINO.",
        "NINO {} was rejected by your form.",
        "Here is my national insurance no. {} as requested.",
    ],
}

# Value generators per entity type, some with a context variant (unformatted phones and SSNs,
# which need a cue to be recognisable at all).
NEGATIVE_TEMPLATES = [
    "Ordered on {date} at {time}, delivered a week late.",
    "My order {order} still shows as processing.",
    "Order #{digits9} arrived damaged, box crushed.",
    "Tracking {tracking} hasn't moved since {date}.",
    "The USPS tracking number {usps} says delivered but nothing here.",
    "After updating to {version} the app crashes on start.",
    "Windows build {winbuild} breaks the desktop client.",
    "Version {version4} of the firmware bricked my device.",
    "I paid {price} for {qty} and got only half.",
    "Invoice {invoice} lists the wrong VAT amount.",
    "The card number {badcard} was refused, is it wrong?",
    "My IBAN {badiban} is rejected by your form, typo?",
    "The SSN field rejected {badssn}; is the validation broken?",
    "Reference {badnino} doesn't look like my NI number.",
    "Barcode {ean} on the box doesn't match the website.",
    "ISBN {isbn} is listed twice in the catalogue.",
    "Meeting moved to {date2}, {time} CET.",
    "Ticket {ticket} was closed without a reply.",
    "Serial number {serial} is not recognised by the warranty form.",
    "Shipped {qty} on {date}; expected {qty2} by {date2}.",
    "Your dashboard shows {percent} uptime, I doubt it.",
    "The GPS pin at {coords} is wrong for our store.",
    "It took {seconds} seconds to load, version {semver}.",
    "Account 12345678 — sorry, that's my customer id {custid}.",
    "Crash log says {mac} disconnected at {time}.",
    "Total was {bigprice} for {units} units.",
    "Tried subnet 192.168.1 and range 10.0.0 but no luck.",
    "Error code {errcode} on the checkout page.",
    "Delivery slot {time}–{time2} on {date} was missed.",
    "Booking ref {booking}, room 1204, stayed {nights} nights.",
    "Great service, fast delivery and friendly staff.",
    "The app is slow since the last update, please optimise.",
    "Customer support was rude and didn't solve anything.",
    "Love the new design! Dark mode is perfect.",
    "Refund still pending after 14 days, 3 emails, 2 calls.",
    "Product broke after 2 weeks, quality is terrible.",
    "Checkout fails with 'payment error' every time.",
    "Le produit est arrivé cassé, très déçu.",
    "Lieferung kam 3 Tage zu spät, sonst alles gut.",
    "配送が遅れましたが、商品は良かったです。",
    "Price went from €49,90 to €59,90 overnight?!",
    "I rate this 4/5, would be 5/5 with better packaging.",
]


def negative_fields(g):
    r = g.r
    y = r.randrange(2019, 2027)
    m, d = r.randrange(1, 13), r.randrange(1, 29)
    dates = [f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{m:02d}/{d:02d}/{y}",
             f"{d:02d}.{m:02d}.{y}", f"{d}.{m}.{y}", f"{y}/{m:02d}/{d:02d}"]
    times = [f"{r.randrange(24):02d}:{r.randrange(60):02d}", f"{r.randrange(1, 13)}:{r.randrange(60):02d} pm",
             f"{r.randrange(24):02d}:{r.randrange(60):02d}:{r.randrange(60):02d}"]
    ean_body = g.digits(12, "0123456789")
    ean_check = (10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(ean_body)) % 10) % 10
    isbn_body = "978" + g.digits(9)
    isbn_check = (10 - sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(isbn_body)) % 10) % 10
    isbn = isbn_body + str(isbn_check)
    return {
        "date": r.choice(dates), "date2": r.choice(dates), "time": r.choice(times),
        "time2": r.choice(times),
        "order": r.choice([f"ORD-{y}-{g.digits(6)}", f"#{g.digits(9, '123456789')}", f"A{g.digits(8)}",
                           f"{g.digits(3, '123456789')}-{g.digits(7)}-{g.digits(7)}",
                           f"ORDER {g.digits(10, '123456789')}", f"PO-{g.digits(5)}"]),
        "digits9": g.digits(9, "123456789"),
        "tracking": r.choice(["1Z999AA10123456784", f"1Z{g.digits(3)}AA{g.digits(10)}",
                              f"JD0146{g.digits(14)}", f"LX{g.digits(9)}CN", f"{g.digits(12, '123456789')}"]),
        "usps": r.choice(["9400 1000 0000 0000 0000 00", f"9400 {g.digits(4)} {g.digits(4)} {g.digits(4)} {g.digits(4)} {g.digits(2)}",
                          f"9205{g.digits(18)}"]),
        "version": r.choice([f"v{r.randrange(1, 20)}.{r.randrange(30)}.{r.randrange(10)}",
                             f"{r.randrange(1, 20)}.{r.randrange(30)}.{r.randrange(10)}",
                             f"version {r.randrange(1, 9)}.{r.randrange(10)}.{r.randrange(10)}.{r.randrange(10)}",
                             f"v{r.randrange(1, 9)}.{r.randrange(10)}.{r.randrange(10)}.{r.randrange(100)}",
                             f"{r.randrange(1, 9)}.{r.randrange(10)}.{r.randrange(10)}.{r.randrange(10)}.{r.randrange(10)}"]),
        "version4": f"{r.randrange(1, 9)}.{r.randrange(10)}.{r.randrange(10)}.{r.randrange(100)}.{r.randrange(1000)}",
        "winbuild": f"10.0.{r.randrange(17000, 22700)}.{r.randrange(1000, 5000)}",
        "semver": f"{r.randrange(1, 5)}.{r.randrange(30)}.{r.randrange(30)}",
        "price": r.choice([f"${r.randrange(1, 3000):,}.{r.randrange(100):02d}", f"€{r.randrange(1, 999)},{r.randrange(100):02d}",
                           f"£{r.randrange(1, 999)}.{r.randrange(100):02d}", f"{r.randrange(1, 99999)} JPY",
                           f"R$ {r.randrange(1, 9999)},{r.randrange(100):02d}", f"₹{r.randrange(100, 99999):,}"]),
        "bigprice": f"${r.randrange(1000, 9999999):,}.{r.randrange(100):02d}",
        "qty": r.choice([f"{r.randrange(2, 20)} x {r.randrange(100, 1000)} ml", f"{r.randrange(1, 500)} pcs",
                         f"{r.randrange(1, 12)} kg", f"{r.randrange(1000, 99999):,} units"]),
        "qty2": f"{r.randrange(1, 50)} boxes",
        "units": f"{r.randrange(1, 9)} {r.randrange(100, 999)} {r.randrange(100, 999)}",
        "invoice": r.choice([f"INV-{y}-{g.digits(6)}", f"{y}/{g.digits(6)}", f"RE{y}{g.digits(5)}",
                             f"INV {g.digits(4)}-{g.digits(4)}-{g.digits(4)}"]),
        "badcard": g.bad_card(),
        "badiban": g.bad_iban(),
        "badssn": g.bad_ssn(),
        "badnino": g.bad_nino(),
        "ean": ean_body + str(ean_check),
        "isbn": r.choice([isbn, f"{isbn[:3]}-{isbn[3]}-{isbn[4:6]}-{isbn[6:12]}-{isbn[12]}"]),
        "ticket": r.choice([f"#{g.digits(6)}", f"CS-{g.digits(7)}", f"{g.digits(10, '123456789')}"]),
        "serial": r.choice([f"SN{g.digits(10)}", f"{g.digits(4)}-{g.digits(4)}-{g.digits(4)}",
                            f"C02{g.digits(2)}X{g.digits(4)}"]),
        "percent": f"{r.randrange(90, 100)}.{r.randrange(100):02d}%",
        "coords": f"{r.uniform(-90, 90):.4f}, {r.uniform(-180, 180):.4f}",
        "seconds": f"{r.randrange(1, 60)}.{r.randrange(10)}",
        "custid": f"CUST-{g.digits(8)}",
        "mac": ":".join(format(r.randrange(256), "02X") for _ in range(6)),
        "errcode": r.choice([f"0x{r.randrange(1 << 32):08X}", f"E{g.digits(4)}", f"{r.randrange(400, 600)}"]),
        "booking": f"{''.join(r.choice(string.ascii_uppercase) for _ in range(6))}",
        "nights": str(r.randrange(1, 14)),
    }


def value_for(g, entity):
    r = g.r
    if entity == "EMAIL_ADDRESS":
        return g.email(), None
    if entity == "PHONE_NUMBER":
        if r.random() < 0.08:
            # Unformatted national numbers: recognisable only with a phone word.
            a, e, s = g.us_parts()
            v = r.choice([f"{a}{e}{s}", f"07700900{g.digits(3)}", f"0{r.choice('1234567')}{g.digits(8)}",
                          f"{g.digits(10, '6789')}"])
            return v, r.choice(["Call me on {}.", "My mobile is {} btw.", "Phone: {}", "Text me at {}."])
        return g.phone(), None
    if entity == "CREDIT_CARD":
        return g.card(), None
    if entity == "IBAN_CODE":
        return g.iban(), None
    if entity == "IP_ADDRESS":
        if r.random() < 0.55:
            return g.ipv4(), r.choice([None, None, None, "Connecting to {}:8443 times out.",
                                        "Traffic from {}/32 is being dropped.", "Ping {} fails."])
        return g.ipv6(), r.choice([None, None, "Connecting to [{}]:443 times out.", "Blocked {}. Why?"])
    if entity == "US_SSN":
        a, gr, s = g.ssn_parts()
        style = r.randrange(6)
        if style == 4:
            return f"{a} {gr} {s}", r.choice(["My SSN is {}.", "social security number {}, please delete it"])
        if style == 5:
            return f"{a}{gr}{s}", r.choice(["SSN {} typed without dashes.", "my social security {} got leaked"])
        return f"{a}-{gr}-{s}", None
    if entity == "UK_NINO":
        v = g.nino()
        return (v.lower() if r.random() < 0.05 else v), None
    raise ValueError(entity)


class Builder:
    def __init__(self):
        self.text = ""
        self.entities = []

    def add(self, s):
        self.text += s

    def entity(self, kind, value):
        start = len(self.text)
        self.text += value
        self.entities.append({"type": kind, "start": start, "end": start + len(value)})

    def template(self, template, kind, value):
        before, after = template.split("{}", 1)
        self.add(before)
        self.entity(kind, value)
        self.add(after)


ENTITY_WEIGHTS = [("EMAIL_ADDRESS", 3), ("PHONE_NUMBER", 5), ("CREDIT_CARD", 3), ("IBAN_CODE", 3),
                  ("IP_ADDRESS", 3), ("US_SSN", 2), ("UK_NINO", 2)]


def pick_entity(r):
    names = [n for n, w in ENTITY_WEIGHTS for _ in range(w)]
    return r.choice(names)


def positive_sentence(g):
    r = g.r
    b = Builder()
    b.add(r.choice(OPENERS))
    for k in range(r.choice([1, 1, 1, 1, 2, 2, 3])):
        if k:
            b.add(r.choice([" Also, ", " And ", " PS: ", " ", " Btw. "]))
        kind = pick_entity(r)
        value, own = value_for(g, kind)
        template = own or r.choice(TEMPLATES[kind])
        b.template(template, kind, value)
    if r.random() < 0.25:
        # A look-alike next to the real thing.
        fields = negative_fields(g)
        b.add(" " + r.choice(NEGATIVE_TEMPLATES).format(**fields))
    b.add(r.choice(CLOSERS))
    return b


def negative_sentence(g):
    r = g.r
    b = Builder()
    b.add(r.choice(OPENERS))
    b.add(r.choice(NEGATIVE_TEMPLATES).format(**negative_fields(g)))
    if r.random() < 0.3:
        b.add(" " + r.choice(NEGATIVE_TEMPLATES).format(**negative_fields(g)))
    b.add(r.choice(CLOSERS))
    return b


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--count", type=int, default=2400)
    parser.add_argument("--out", default="crates/feedback/tests/data/pii_corpus.jsonl")
    args = parser.parse_args()
    g = Gen(random.Random(args.seed))
    with open(args.out, "w", encoding="utf-8") as f:
        for _ in range(args.count):
            b = positive_sentence(g) if g.r.random() < 0.6 else negative_sentence(g)
            for e in b.entities:
                assert b.text[e["start"]:e["end"]].strip() == b.text[e["start"]:e["end"]]
            f.write(json.dumps({"text": b.text, "entities": b.entities}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
