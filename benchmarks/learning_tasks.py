"""Tool-use tasks for benchmarks/learning.py, in domains dsft ships nothing about.

Three domains: `calendar` (Northwind Corp scheduling), `shipping` (Kestrel Freight logistics),
`clinic` (Maplewood Clinic front desk). Each has 4-5 OpenAI-format tools with typed arguments
(strings, integers, floats, enums, arrays of emails or names, nested objects, ISO dates and
datetimes, emails) and writes, from one seed, byte-identical files:

  train.jsonl            seen phrasings,   TRAIN values
  test.jsonl             seen phrasings,   TEST values (held out)
  test_paraphrase.jsonl  UNSEEN phrasings, TEST values (held out)

Every row: 75 % one call, 15 % two calls in one turn, 10 % requests that need no tool.
Argument values appear verbatim in the request (enums by their own word or a fixed synonym).
Held out:
- values: every pool (names, domains, cities, streets, countries, title words, dates, times,
  numbers...) is cut 2/3 train, 1/3 test; test pools then lose any string that occurs in the
  training file's text, and a test row is redrawn until no argument string (>= 4 characters,
  enums aside) occurs in the training text and no multi-digit argument number is a training
  argument number. `check()` asserts this again from the files.
- phrasings: the seen and unseen request templates (and parallel-call connectors, and no-tool
  requests) are disjoint sets; train and test.jsonl use seen ones, test_paraphrase.jsonl unseen.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------- schemas
S, INT, NUM = {"type": "string"}, {"type": "integer"}, {"type": "number"}
EMAIL, DATE = {"type": "string", "format": "email"}, {"type": "string", "format": "date"}
DATETIME = {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$", "description": "YYYY-MM-DDTHH:MM"}
TIME = {"type": "string", "pattern": r"^\d{2}:\d{2}$", "description": "HH:MM"}


def enum(*values: str) -> dict:
    return {"type": "string", "enum": list(values)}


def array(items: dict, min_items: int = 1) -> dict:
    return {"type": "array", "items": items, "minItems": min_items}


def obj(props: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": props, "required": required or list(props), "additionalProperties": False}


ADDRESS = obj({"street": S, "city": S, "postal_code": S, "country": S})

# ---------------------------------------------------------------- value pools
SYL = ("ka lo mi ren tas vel dor fin sa bri ol un zar pe no ther gal ima cor ly ba tu sen vi ra mon hal eth qui "
       "ro").split()
COUNTRIES = ("Portugal Norway Chile Kenya Vietnam Canada Morocco Finland Peru Ireland Austria Ghana Uruguay Denmark "
             "Estonia Jordan Nepal Iceland Belgium Mexico Croatia Senegal Mongolia Slovenia Tunisia Ecuador Latvia "
             "Bhutan Malta Cyprus Greece Sweden Poland Brazil Japan Egypt Namibia Panama Bolivia Albania").split()
TOPICS = ("budget roadmap hiring onboarding security pricing launch vendor design retention marketing payroll "
          "compliance research analytics support logistics partnership branding training inventory procurement "
          "legal strategy sales finance product engineering quality recruiting infrastructure migration audit "
          "forecast benefits expansion sustainability outreach licensing localization accessibility mobile billing "
          "hardware catering facilities insurance").split()
ADJ = "Quarterly Weekly Monthly Annual Team Regional Internal Client Q1 Q2 Q3 Q4".split()
KINDS = "review sync workshop planning retro kickoff briefing demo check-in offsite".split()
DOCS = "contract invoice proposal report slides estimate agreement".split()
VERBS = "call email text meet thank ping".split()
DRUG_SUFFIX = "statin pril olol azole cillin mab dronate xetine".split()


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def days(start: dt.date, n: int) -> list[str]:
    return [(start + dt.timedelta(d)).isoformat() for d in range(n)]


def multi_digit(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and len(re.sub(r"\D", "", repr(v))) >= 2


class Pools:
    """One split's values. Every pool is shuffled once from the seed and cut: 2/3 train, 1/3 test;
    single-digit numbers (which cannot be held out) are in both."""

    def __init__(self, seed: int, split: str, rng: random.Random):
        self.rng, cut_rng = rng, random.Random(f"pools:{seed}")

        def cut(values, shared=lambda v: False) -> list:
            values = list(dict.fromkeys(values))
            cut_rng.shuffle(values)
            common, rest = [v for v in values if shared(v)], [v for v in values if not shared(v)]
            k = len(rest) * 2 // 3
            return common + (rest[:k] if split == "train" else rest[k:])

        combos = [a + b for a in SYL for b in SYL if a != b]
        single = lambda v: not multi_digit(v)  # noqa: E731
        self.pools: dict[str, list] = {
            "first": cut(cap(c) + e for c in combos[::3] for e in ("a", "n", "o")),
            "last": cut(cap(c) + s for c in combos[1::3] for s in ("son", "berg", "ford", "ley", "ski", "dale")),
            "domain": cut(f"{c}{t}" for c in combos[2::5] for t in (".com", ".io", ".net", ".org")),
            "city": cut(cap(c) + s for c in combos[::4] for s in ("holm", "burg", "ville", "stad", "mouth", "haven")),
            "street": cut(f"{cap(c)}{s} {k}" for c in combos[1::4] for s in ("wood", "stone", "brook", "gate")
                          for k in ("Street", "Road", "Lane", "Avenue")),
            "building": cut(f"{cap(c)} {k}" for c in combos[3::4] for k in ("Hall", "Tower", "House", "Wing")),
            "med": cut(cap(c) + s for c in combos[2::3] for s in DRUG_SUFFIX),
            "country": cut(COUNTRIES), "topic": cut(TOPICS),
            "date": cut(days(dt.date(2026, 1, 1), 730)), "dob": cut(days(dt.date(1940, 1, 1), 25000)),
            "time": cut(f"{h:02d}:{m:02d}" for h in range(7, 20) for m in (0, 15, 30, 45)),
            "duration": cut(range(10, 185, 5)), "capacity": cut(range(2, 41), single),
            "hours": cut((x / 4 for x in range(2, 25) if x % 4), single),
            "weight": cut((x / 10 for x in range(3, 500) if x % 10), single),
            "count": cut(range(1, 16), single), "quantity": cut(range(5, 121), single),
            "n": cut(range(11, 100)), "street_no": cut(range(1, 200), single),
        }

    def without(self, text: str) -> Pools:
        """Drop every string value that occurs in `text` (the training file): held-out means unseen."""
        for key, values in self.pools.items():
            if key not in ("date", "dob", "time"):  # held out by construction: nothing else looks like them
                self.pools[key] = [v for v in values if not (isinstance(v, str) and v in text)]
            assert self.pools[key], f"test pool {key!r} is empty after removing training strings"
        return self

    def __getattr__(self, key: str):  # P.first() -> a random first name of this split
        pools = self.__dict__.get("pools", {})
        if key in pools:
            return lambda: self.rng.choice(pools[key])
        raise AttributeError(key)

    def code(self, pattern: str) -> str:  # '#' a digit, '@' a capital letter
        return "".join(str(self.rng.randrange(10)) if c == "#" else chr(65 + self.rng.randrange(26)) if c == "@"
                       else c for c in pattern)

    def person(self) -> str:
        return f"{self.first()} {self.last()}"

    def email(self) -> str:
        f, last, d = self.first().lower(), self.last().lower(), self.domain()
        return self.rng.choice([f"{f}.{last}@{d}", f"{f}@{d}", f"{f[0]}{last}@{d}"])

    def emails(self, lo: int, hi: int) -> list[str]:
        return list(dict.fromkeys(self.email() for _ in range(self.rng.randint(lo, hi))))

    def datetime(self) -> str:
        return f"{self.date()}T{self.time()}"

    def title(self) -> str:
        words = [self.rng.choice(ADJ), self.topic(), self.rng.choice(KINDS)]
        return cap(" ".join(words[self.rng.random() < 0.3:]))

    def address(self) -> dict:
        postal = self.code(self.rng.choice(["#####", "####", "@@# #@@", "@#@ #@#"]))
        return {"street": f"{self.street_no()} {self.street()}", "city": self.city(), "postal_code": postal,
                "country": self.country()}


# ---------------------------------------------------------------- tools and phrasings
@dataclass
class Tool:
    name: str
    description: str
    props: dict
    required: list[str]
    draw: Callable[[Pools], dict]  # every argument (optional ones too); templates pick which are stated
    result: Callable[[Pools, dict], dict]
    answer: str  # str.format over the stated argument texts and the result's fields
    seen: str  # request templates, one per line; {arg} slots
    unseen: str

    def declaration(self) -> dict:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": obj(self.props, self.required)}}


@dataclass
class Domain:
    name: str
    system: str
    scope: str
    synonyms: dict[str, list[str]]  # enum value -> words a user says for it
    tools: list[Tool]
    chat_seen: str  # no-tool requests: "request || answer", slots {city} {person} {topic} {n} {med} {scope}
    chat_unseen: str


def lines(block: str) -> list[str]:
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


CONNECT_SEEN = ["{a} Also, {b_}", "{a} Then {b_}", "{a} And one more thing: {b}", "Two things. {a} {b}",
                "{a} Additionally, {b_}", "First: {a} Second: {b}"]
CONNECT_UNSEEN = ["{a} On top of that, {b_}", "{a} While you're at it, {b_}", "Couple of requests. One: {a} Two: {b}",
                  "{a} Oh, and {b_}"]
CHAT_SEEN = """
Hi! This is {person} from {city}. || Hello {person}! How can I help you today?
Hello there, {person} here. How are you? || I'm doing well, thanks. What can I do for you?
Thanks, that's all for now. Regards, {person} || You're welcome! Have a good day.
Tell me a joke about {topic}. || I'll leave the jokes to others; I can help with {scope}.
What's the weather like in {city} today? || I don't have weather information. I can help with {scope}.
What is {n} squared? || I can't help with arithmetic here; I handle {scope}.
Who is {person}? || I don't have information about people. I can help with {scope}.
Write a short poem about {topic}. || Writing poems is outside what I do. I can help with {scope}.
Can you recommend a restaurant in {city}? || I can't recommend restaurants, but I can help with {scope}.
I just moved to {city}. What can you do? || I can help with {scope}.
How many people live in {city}? || I don't have that information. I can help with {scope}.
"""
CHAT_UNSEEN = """
Good morning, {person} speaking! || Good morning! What can I do for you?
Is {city} a nice place to visit? || I can't give travel advice, but I can help with {scope}.
Summarise the history of {topic} for me. || That's outside my job; I can help with {scope}.
Do you happen to know {person}'s phone number? || I don't have personal contact details. I can help with {scope}.
Cheers, you've been helpful. {person} || Glad to help! Anything else, just ask.
Give me a fun fact about the number {n}. || I'll pass on trivia; I can help with {scope}.
"""

CALENDAR = Domain(
    "calendar", "You are the scheduling assistant of Northwind Corp. Use the tools when a request needs them.",
    "events, free slots, reminders, room bookings and cancellations",
    {"email": ["email", "e-mail"], "sms": ["sms", "text message"], "push": ["push", "push notification"]},
    [Tool("create_event", "Create a calendar event and invite attendees",
          {"title": S, "start": DATETIME, "duration_minutes": INT, "attendees": array(EMAIL)},
          ["title", "start", "attendees"],
          lambda P: {"title": P.title(), "start": P.datetime(), "duration_minutes": P.duration(),
                     "attendees": P.emails(1, 3)},
          lambda P, a: {"event_id": P.code("EVT-#####"), "status": "created"},
          'Done: "{title}" is on the calendar for {start} (event {event_id}); invitations went to {attendees}.',
          """
    Schedule "{title}" on {start} with {attendees}.
    Create an event called {title} at {start} for {duration_minutes} minutes and invite {attendees}.
    Put "{title}" in the calendar for {start}, attendees: {attendees}.
    Please set up a meeting titled "{title}" starting {start} with {attendees}, {duration_minutes} minutes long.
    Book a {duration_minutes}-minute meeting "{title}" at {start} with {attendees}.
    Can you add "{title}" on {start}? Invite {attendees}.
    New event: {title}, {start}, {duration_minutes} min, guests {attendees}.
    I need "{title}" scheduled for {start} with {attendees}.
    Set up {title} with {attendees} at {start}.
    Add a calendar event "{title}" starting at {start}, lasting {duration_minutes} minutes, with {attendees}.
    Organize "{title}" for {start} and send invites to {attendees}.
    Please schedule a meeting with {attendees} called "{title}" on {start}.
    Create "{title}" at {start} ({duration_minutes} minutes) and invite {attendees}.
    Could you put a meeting named {title} on {start} for {attendees}?
    Invite {attendees} to "{title}" on {start}.
    Make an event "{title}" on {start} lasting {duration_minutes} minutes for {attendees}.""",
          """
    Pencil in "{title}" for {start}; the guest list is {attendees}.
    {attendees} should join me for "{title}"; it kicks off {start} and runs {duration_minutes} minutes.
    Get "{title}" onto everyone's agenda: {start}, people: {attendees}.
    Arrange a session named "{title}" beginning {start} including {attendees}.
    Let's have "{title}" at {start}. Send the invitation to {attendees}.
    Reserve {duration_minutes} minutes at {start} for "{title}" with {attendees}."""),
     Tool("find_free_slot", "Find times when all attendees are free",
          {"date": DATE, "duration_minutes": INT, "attendees": array(EMAIL)}, ["date", "duration_minutes", "attendees"],
          lambda P: {"date": P.date(), "duration_minutes": P.duration(), "attendees": P.emails(1, 3)},
          lambda P, a: {"slots": sorted({f"{a['date']}T{P.time()}" for _ in range(2)})},
          "Free on {date} for {attendees}: {slots}.",
          """
    Find a free {duration_minutes}-minute slot on {date} for {attendees}.
    When are {attendees} all free on {date} for {duration_minutes} minutes?
    Look for {duration_minutes} minutes of free time on {date} with {attendees}.
    Check availability of {attendees} on {date} for a {duration_minutes} minute meeting.
    Is there a {duration_minutes}-minute gap on {date} that works for {attendees}?
    Find a slot on {date}, {duration_minutes} minutes, for {attendees}.
    I need {duration_minutes} minutes with {attendees} on {date}. When are they free?
    Search for a common free slot on {date} for {attendees}, {duration_minutes} minutes long.
    Can you find when {attendees} are available on {date}? I need {duration_minutes} minutes.
    Show me open {duration_minutes}-minute windows on {date} for {attendees}.
    Please check {date} for a free {duration_minutes} minutes with {attendees}.
    What time on {date} are {attendees} free for {duration_minutes} minutes?
    Find availability for {attendees} on {date}, duration {duration_minutes} minutes.
    Look up a {duration_minutes} minute opening on {date} for me and {attendees}.
    Free slots on {date} for {attendees}? I need {duration_minutes} minutes.""",
          """
    Which part of {date} leaves {duration_minutes} minutes open for {attendees}?
    Scan the calendars of {attendees} on {date} for a {duration_minutes}-minute opening.
    I'd like to meet {attendees} for {duration_minutes} minutes on {date}; what is open?
    Do {attendees} share any {duration_minutes}-minute window on {date}?
    Figure out when {attendees} can spare {duration_minutes} minutes on {date}.
    Spot a {duration_minutes} minute hole in the schedules of {attendees} on {date}."""),
     Tool("set_reminder", "Remind the user at a given time",
          {"message": S, "remind_at": DATETIME, "channel": enum("email", "sms", "push")}, ["message", "remind_at"],
          lambda P: {"message": f"{P.rng.choice(VERBS)} {P.person()} about the {P.topic()} {P.rng.choice(DOCS)}",
                     "remind_at": P.datetime(), "channel": P.rng.choice(["email", "sms", "push"])},
          lambda P, a: {"reminder_id": P.code("REM-####"), "status": "scheduled"},
          "I'll remind you at {remind_at} to {message}.",
          """
    Remind me to {message} at {remind_at}.
    Set a reminder to {message} on {remind_at} by {channel}.
    Please remind me at {remind_at} to {message}.
    Create a reminder: {message}, {remind_at}.
    Send me a {channel} reminder at {remind_at} to {message}.
    I need a reminder on {remind_at}: {message}.
    Ping me by {channel} at {remind_at} so I remember to {message}.
    Remind me on {remind_at} via {channel} to {message}.
    Set up a {channel} reminder for {remind_at}: {message}.
    Don't let me forget to {message}; remind me at {remind_at}.
    Add a reminder at {remind_at} to {message}.
    Can you remind me to {message} on {remind_at}?
    Reminder please: {message} at {remind_at}, send it as {channel}.
    At {remind_at} remind me to {message}.
    Schedule a reminder to {message} for {remind_at} through {channel}.""",
          """
    Nudge me at {remind_at} about this: {message}.
    Make sure I {message}; alert me {remind_at} over {channel}.
    Jog my memory on {remind_at} that I have to {message}.
    I keep forgetting to {message}. Give me a heads-up at {remind_at}.
    Drop me a {channel} note at {remind_at} telling me to {message}.
    Flag {remind_at} for me: {message}."""),
     Tool("book_room", "Book a meeting room",
          {"building": S, "date": DATE, "start_time": TIME, "hours": NUM, "capacity": INT},
          ["building", "date", "start_time", "hours"],
          lambda P: {"building": P.building(), "date": P.date(), "start_time": P.time(), "hours": P.hours(),
                     "capacity": P.capacity()},
          lambda P, a: {"room": P.code("#.##"), "status": "booked"},
          "Room {room} in {building} is yours on {date} from {start_time} for {hours} hours.",
          """
    Book a room in {building} on {date} at {start_time} for {hours} hours.
    Reserve a meeting room at {building} for {capacity} people on {date} from {start_time}, {hours} hours.
    I need a room in {building} on {date} starting {start_time} for {hours} hours.
    Can you book {building} on {date} at {start_time} for {hours} hours for {capacity} people?
    Get me a room for {capacity} in {building}, {date} at {start_time}, {hours} hours.
    Please reserve a room in {building} for {hours} hours on {date} from {start_time}.
    Room booking: {building}, {date}, {start_time}, {hours} hours.
    Book a space in {building} for {capacity} people on {date} at {start_time} for {hours} hours.
    Find and book a room in {building} at {start_time} on {date} for {hours} hours.
    Reserve {building} on {date}, start {start_time}, duration {hours} hours, {capacity} seats.
    We need a meeting room in {building} on {date} at {start_time} for {hours} hours.
    Book me a room on {date} at {start_time} in {building} for {hours} hours.
    Could you reserve a room for {capacity} people in {building} on {date} at {start_time} for {hours} hours?
    Please book {hours} hours in {building} on {date} beginning at {start_time}.
    Reserve a room at {building} on {date} from {start_time} for {hours} hours.""",
          """
    Hold a room in {building} for {capacity} of us, {date}, from {start_time} for {hours} hours.
    Grab a conference room over in {building}: {date}, {start_time}, {hours} hours.
    Our team of {capacity} needs space in {building} on {date} for {hours} hours beginning {start_time}.
    Secure {hours} hours of room time in {building} on {date} from {start_time}.
    If a room in {building} is free on {date} at {start_time}, take it for {hours} hours.
    Lock in a room at {building} on {date}, {start_time} start, {hours} hours."""),
     Tool("cancel_event", "Cancel a calendar event",
          {"event_id": S, "reason": enum("conflict", "illness", "travel", "weather")}, ["event_id"],
          lambda P: {"event_id": P.code("EVT-#####"),
                     "reason": P.rng.choice(["conflict", "illness", "travel", "weather"])},
          lambda P, a: {"status": "cancelled", "notified": P.rng.randint(2, 6)},
          "Event {event_id} is cancelled and {notified} attendees were notified.",
          """
    Cancel event {event_id}.
    Please cancel {event_id} because of {reason}.
    Cancel the meeting {event_id}, reason: {reason}.
    Delete event {event_id} from the calendar.
    I can't make {event_id}, cancel it due to {reason}.
    Remove {event_id} please.
    Call off event {event_id}.
    Cancel {event_id}; the reason is {reason}.
    Please drop the event with id {event_id}.
    Cancel meeting {event_id} for {reason}.
    Could you cancel {event_id}?
    Event {event_id} is off, please cancel it ({reason}).
    Cancel my event {event_id}.
    Please cancel the event {event_id} due to {reason}.
    Cancel {event_id} and note the reason as {reason}.""",
          """
    Scrap {event_id}, {reason} got in the way.
    {event_id} won't happen anymore, take it off the calendar.
    Get rid of {event_id} on account of {reason}.
    Kill the booking {event_id}.
    Please pull {event_id} from everyone's calendar; cause: {reason}.
    Nix event {event_id}.""")],
    CHAT_SEEN + """
    Any tips for keeping meetings about {topic} short? || Share an agenda early and invite only who decides.
    What day of the week is best for a {topic} meeting? || Mid-week mornings usually have the fewest conflicts.
    """, CHAT_UNSEEN + """
    How long should a {topic} workshop be? || Two hours with a break is a good default; longer sessions lose focus.
    """)

SHIPPING = Domain(
    "shipping", "You are the customer assistant of Kestrel Freight. Use the tools when a request needs them.",
    "shipments, tracking, quotes, pickups and redirects",
    {"standard": ["standard", "regular"], "express": ["express"], "overnight": ["overnight", "next-day"]},
    [Tool("create_shipment", "Create a shipment and get its tracking number",
          {"recipient_name": S, "address": ADDRESS, "weight_kg": NUM,
           "service": enum("standard", "express", "overnight")},
          ["recipient_name", "address", "weight_kg"],
          lambda P: {"recipient_name": P.person(), "address": P.address(), "weight_kg": P.weight(),
                     "service": P.rng.choice(["standard", "express", "overnight"])},
          lambda P, a: {"tracking_number": P.code("@@#######@@"), "eta": P.date()},
          "Shipment for {recipient_name} created: tracking number {tracking_number}, expected on {eta}.",
          """
    Ship a {weight_kg} kg parcel to {recipient_name}, {address}.
    Create a shipment for {recipient_name} at {address}, {weight_kg} kg, {service}.
    Send a package of {weight_kg} kg to {recipient_name} at {address} by {service} delivery.
    I want to ship {weight_kg} kg to {recipient_name}, address: {address}.
    Please create a {service} shipment to {recipient_name}, {address}, weight {weight_kg} kg.
    New shipment: {recipient_name}, {address}, {weight_kg} kg.
    Mail a {weight_kg} kg box to {recipient_name} at {address}.
    Can you send {weight_kg} kg to {recipient_name} ({address}) with {service} service?
    Ship this to {recipient_name}: {address}. It weighs {weight_kg} kg.
    Book a {service} delivery of {weight_kg} kg for {recipient_name} at {address}.
    Send a parcel to {recipient_name} at {address}; it is {weight_kg} kg.
    Create a shipment: recipient {recipient_name}, address {address}, {weight_kg} kg, {service}.
    Please ship a {weight_kg} kg package {service} to {recipient_name}, {address}.
    I need to send {weight_kg} kg to {recipient_name} at {address}.
    Dispatch a {weight_kg} kg parcel to {recipient_name}, {address}, {service}.
    Arrange shipping of {weight_kg} kg to {recipient_name} at {address}.""",
          """
    Get {recipient_name} this {weight_kg} kg crate; deliver it to {address}, {service}.
    {recipient_name} at {address} is expecting a {weight_kg} kg package from me.
    Post {weight_kg} kg worth of goods over to {recipient_name}, {address}.
    Please label and send {weight_kg} kg for {recipient_name}; destination {address}.
    Have a {weight_kg} kg box go out {service} to {recipient_name} at {address}.
    Prepare a consignment of {weight_kg} kg addressed to {recipient_name}, {address}."""),
     Tool("track_package", "Tracking status of a shipment",
          {"tracking_number": S, "notify_email": EMAIL}, ["tracking_number"],
          lambda P: {"tracking_number": P.code("@@#######@@"), "notify_email": P.email()},
          lambda P, a: {"status": P.rng.choice(["in transit", "out for delivery", "delivered", "at the depot"]),
                        "location": P.city()},
          "{tracking_number} is {status} ({location}).",
          """
    Where is my package {tracking_number}?
    Track {tracking_number}.
    What's the status of shipment {tracking_number}?
    Track parcel {tracking_number} and email updates to {notify_email}.
    Can you check where {tracking_number} is?
    Please track {tracking_number} and notify {notify_email}.
    Status of {tracking_number}, please.
    Has {tracking_number} been delivered yet?
    Look up tracking number {tracking_number}.
    Track my shipment {tracking_number}; send updates to {notify_email}.
    I'd like an update on parcel {tracking_number}.
    Where's {tracking_number} right now?
    Check the delivery status for {tracking_number}.
    Track package {tracking_number} for me.
    Give me the tracking info for {tracking_number}, and email {notify_email} with changes.""",
          """
    Any news on {tracking_number}?
    How far along is {tracking_number}? Keep {notify_email} in the loop.
    Tell me what happened to consignment {tracking_number}.
    I'm still waiting for {tracking_number}; where did it get to?
    Trace {tracking_number} and ping {notify_email} when it moves.
    Follow {tracking_number} and keep {notify_email} posted."""),
     Tool("get_quote", "Price and transit time of a shipment",
          {"origin_postal_code": S, "destination_postal_code": S, "weight_kg": NUM, "packages": INT},
          ["origin_postal_code", "destination_postal_code", "weight_kg"],
          lambda P: {"origin_postal_code": P.address()["postal_code"],
                     "destination_postal_code": P.address()["postal_code"],
                     "weight_kg": P.weight(), "packages": P.count()},
          lambda P, a: {"price": round(P.rng.uniform(6, 240), 2), "currency": "EUR", "days": P.rng.randint(2, 7)},
          "From {origin_postal_code} to {destination_postal_code}: {price} {currency}, {days} days.",
          """
    How much to ship {weight_kg} kg from {origin_postal_code} to {destination_postal_code}?
    Quote for {packages} packages, {weight_kg} kg, {origin_postal_code} to {destination_postal_code}.
    Get a price for sending {weight_kg} kg from {origin_postal_code} to {destination_postal_code}.
    What does it cost to send {packages} boxes, {weight_kg} kg, from {origin_postal_code} to {destination_postal_code}?
    Price check: {origin_postal_code} -> {destination_postal_code}, {weight_kg} kg.
    Please quote {weight_kg} kg from postcode {origin_postal_code} to {destination_postal_code}.
    I need a shipping quote from {origin_postal_code} to {destination_postal_code} for {weight_kg} kg.
    Estimate the cost of {packages} parcels ({weight_kg} kg) from {origin_postal_code} to {destination_postal_code}.
    Give me a rate for {weight_kg} kg going from {origin_postal_code} to {destination_postal_code}.
    How much for {packages} packages weighing {weight_kg} kg from {origin_postal_code} to {destination_postal_code}?
    Shipping cost from {origin_postal_code} to {destination_postal_code}, {weight_kg} kg?
    Can you quote a {weight_kg} kg shipment from {origin_postal_code} to {destination_postal_code}?
    Calculate the price for {weight_kg} kg, {origin_postal_code} to {destination_postal_code}, {packages} packages.
    Quote me {origin_postal_code} to {destination_postal_code} for {weight_kg} kg.
    What's the rate from {origin_postal_code} to {destination_postal_code} for a {weight_kg} kg parcel?""",
          """
    Ballpark the charge for moving {weight_kg} kg between {origin_postal_code} and {destination_postal_code}.
    If {packages} cartons of {weight_kg} kg left {origin_postal_code} for {destination_postal_code}, what would I pay?
    {origin_postal_code} to {destination_postal_code}, {weight_kg} kg: what's the damage?
    Tell me the fee for a {weight_kg} kg delivery, pickup {origin_postal_code}, drop-off {destination_postal_code}.
    I'm pricing a {weight_kg} kg job from {origin_postal_code} into {destination_postal_code}.
    Work out a tariff for {packages} items, {weight_kg} kg, from {origin_postal_code} to {destination_postal_code}."""),
     Tool("schedule_pickup", "Schedule a courier pickup",
          {"address": ADDRESS, "pickup_date": DATE, "time_window": enum("morning", "afternoon", "evening"),
           "contact_email": EMAIL}, ["address", "pickup_date", "time_window"],
          lambda P: {"address": P.address(), "pickup_date": P.date(),
                     "time_window": P.rng.choice(["morning", "afternoon", "evening"]), "contact_email": P.email()},
          lambda P, a: {"pickup_id": P.code("PU-######"), "status": "scheduled"},
          "A courier will come to {address} on {pickup_date} in the {time_window} (pickup {pickup_id}).",
          """
    Schedule a pickup at {address} on {pickup_date} in the {time_window}.
    Please collect a parcel from {address} on {pickup_date}, {time_window}.
    Book a courier pickup for {pickup_date} ({time_window}) at {address}.
    Arrange a pickup on {pickup_date} in the {time_window} from {address}; contact {contact_email}.
    Can a driver come to {address} on {pickup_date} in the {time_window}?
    I need a pickup from {address} on {pickup_date}, {time_window} please.
    Pick up a package at {address} on {pickup_date} in the {time_window} and email {contact_email}.
    Set up a collection at {address}, {pickup_date}, {time_window}.
    Schedule pickup: {address}, {pickup_date}, {time_window}, contact {contact_email}.
    Please send someone to {address} on {pickup_date} in the {time_window} to collect a parcel.
    Request a {time_window} pickup on {pickup_date} at {address}.
    Book a pickup on {pickup_date} at {address}, {time_window} window.
    Collect from {address} on {pickup_date} during the {time_window}.
    Schedule a {time_window} collection for {pickup_date} at {address}, confirmation to {contact_email}.
    Have a courier pick up at {address} on {pickup_date} in the {time_window}.""",
          """
    My boxes are ready at {address}; swing by on {pickup_date} sometime in the {time_window}.
    On {pickup_date}, {time_window}, a van should stop at {address} for a collection.
    Line up a driver for {address}: {pickup_date}, {time_window}. Confirm with {contact_email}.
    Could your courier fetch a parcel from {address} on the {time_window} of {pickup_date}?
    I'd like things picked up from {address}, {pickup_date}, in the {time_window} slot.
    Come get a shipment at {address} on {pickup_date} ({time_window})."""),
     Tool("redirect_package", "Deliver a shipment to a new address",
          {"tracking_number": S, "new_address": ADDRESS}, ["tracking_number", "new_address"],
          lambda P: {"tracking_number": P.code("@@#######@@"), "new_address": P.address()},
          lambda P, a: {"status": "redirected", "eta": P.date()},
          "{tracking_number} will now go to {new_address}, expected on {eta}.",
          """
    Redirect {tracking_number} to {new_address}.
    Change the delivery address of {tracking_number} to {new_address}.
    Please send parcel {tracking_number} to {new_address} instead.
    Reroute {tracking_number} to {new_address}.
    Update the address for {tracking_number}: {new_address}.
    Deliver {tracking_number} to {new_address} instead of the original address.
    Can you redirect shipment {tracking_number} to {new_address}?
    I moved; please forward {tracking_number} to {new_address}.
    New delivery address for {tracking_number}: {new_address}.
    Change where {tracking_number} goes: {new_address}.
    Please reroute package {tracking_number} to {new_address}.
    Send {tracking_number} to this address instead: {new_address}.
    Redirect my parcel {tracking_number} to {new_address}, please.
    Update shipment {tracking_number} so it is delivered to {new_address}.
    Forward package {tracking_number} to {new_address}.""",
          """
    {tracking_number} is headed to the wrong place; point it at {new_address}.
    Divert {tracking_number} so it lands at {new_address}.
    I won't be home, so could {tracking_number} go to {new_address} rather than my place?
    Swap the destination of {tracking_number} for {new_address}.
    Have {tracking_number} delivered over at {new_address} instead.
    Retarget consignment {tracking_number}: {new_address}.""")],
    CHAT_SEEN + """
    How should I pack fragile items for {city}? || Use a sturdy box, wrap each item, fill the gaps, mark it fragile.
    Quick question from {person}: express or overnight? || Express takes one to two business days, overnight one.
    """, CHAT_UNSEEN + """
    Is bubble wrap better than paper for {topic} samples? || Bubble wrap protects better; paper suits unbreakable items.
    """)

CLINIC = Domain(
    "clinic", "You are the front-desk assistant of Maplewood Clinic. Use the tools when a request needs them.",
    "appointments, prescription refills, interaction checks and lab results",
    {"follow-up": ["follow-up"], "checkup": ["checkup", "check-up"]},
    [Tool("book_appointment", "Book a patient appointment with a doctor",
          {"patient": obj({"first_name": S, "last_name": S, "date_of_birth": DATE}), "doctor": S, "start": DATETIME,
           "visit_type": enum("checkup", "vaccination", "consultation", "follow-up")}, ["patient", "doctor", "start"],
          lambda P: {"patient": {"first_name": P.first(), "last_name": P.last(), "date_of_birth": P.dob()},
                     "doctor": P.last(), "start": P.datetime(),
                     "visit_type": P.rng.choice(["checkup", "vaccination", "consultation", "follow-up"])},
          lambda P, a: {"appointment_id": P.code("APT-#####"), "status": "confirmed"},
          "{patient} is booked with Dr. {doctor} at {start} (appointment {appointment_id}).",
          """
    Book an appointment for {patient} with Dr. {doctor} on {start}.
    Schedule {patient} to see Dr. {doctor} at {start} for a {visit_type}.
    I'd like a {visit_type} with Dr. {doctor} on {start} for {patient}.
    Please book Dr. {doctor} at {start}, patient {patient}.
    Make an appointment: {patient}, Dr. {doctor}, {start}, {visit_type}.
    Can you book {patient} in with Dr. {doctor} on {start}?
    Appointment for {patient} at {start} with Dr. {doctor}, please.
    Set up a {visit_type} for {patient} with Dr. {doctor} at {start}.
    Please schedule an appointment with Dr. {doctor} on {start} for {patient}.
    Book a {visit_type} appointment at {start} with Dr. {doctor}; the patient is {patient}.
    Reserve Dr. {doctor} on {start} for {patient}.
    Get {patient} an appointment with Dr. {doctor} at {start}.
    Please put {patient} down for a {visit_type} with Dr. {doctor} on {start}.
    New appointment with Dr. {doctor} at {start} for {patient}.
    Book {patient} with Dr. {doctor} for {start}.""",
          """
    {patient} needs to be seen by Dr. {doctor}; {start} works.
    Could Dr. {doctor} fit in {patient} at {start} for a {visit_type}?
    Pencil {patient} into the diary of Dr. {doctor} on {start}.
    Let {patient} visit Dr. {doctor} at {start}.
    Arrange for Dr. {doctor} to meet {patient}, {start}, {visit_type}.
    Secure a slot with Dr. {doctor} at {start} on behalf of {patient}."""),
     Tool("refill_prescription", "Refill a prescription for pickup at a branch",
          {"rx_number": S, "quantity": INT, "pickup_branch": S}, ["rx_number", "pickup_branch"],
          lambda P: {"rx_number": P.code("RX-#######"), "quantity": P.quantity(), "pickup_branch": P.city()},
          lambda P, a: {"status": "queued", "ready_on": P.date()},
          "Prescription {rx_number} will be ready at the {pickup_branch} branch on {ready_on}.",
          """
    Refill prescription {rx_number} for pickup at the {pickup_branch} branch.
    Please refill {rx_number}, {quantity} tablets, pick up at {pickup_branch}.
    I need a refill of {rx_number} at the {pickup_branch} branch.
    Refill {rx_number} and send it to {pickup_branch}.
    Can you renew prescription {rx_number}? I'll collect it at {pickup_branch}.
    Reorder {rx_number}, quantity {quantity}, {pickup_branch} branch.
    Please refill my prescription {rx_number} for collection at {pickup_branch}.
    Refill request: {rx_number}, {pickup_branch}.
    I'm out of my medication, prescription {rx_number}; I'll pick it up at {pickup_branch}.
    Refill {quantity} doses of {rx_number} for the {pickup_branch} branch.
    Get prescription {rx_number} ready at {pickup_branch}.
    Please prepare a refill of {rx_number} at {pickup_branch}, {quantity} units.
    Refill {rx_number} please, pickup {pickup_branch}.
    Could you refill {rx_number}? Pickup at the {pickup_branch} branch.
    Request a refill for {rx_number} with {quantity} tablets at {pickup_branch}.""",
          """
    My supply of {rx_number} is nearly gone; have {quantity} more waiting at {pickup_branch}.
    Top up {rx_number}, I'll swing by {pickup_branch} for it.
    Renew {rx_number} so the {pickup_branch} pharmacy has it ready.
    Put {rx_number} through again, collection from {pickup_branch}.
    Could {pickup_branch} have {rx_number} filled for me?
    Repeat {rx_number} for {quantity} tablets; I'm collecting at {pickup_branch}."""),
     Tool("check_interactions", "Check medications for interactions",
          {"medications": array(S, 2)}, ["medications"],
          lambda P: {"medications": list(dict.fromkeys(P.med() for _ in range(P.rng.randint(2, 3))))},
          lambda P, a: {"interactions": P.rng.choice([[], [{"pair": a["medications"][:2], "severity": "moderate"}]])},
          "Checked {medications}: {interactions} interaction(s) found; a pharmacist can advise on any.",
          """
    Check interactions between {medications}.
    Do {medications} interact?
    Is it safe to take {medications} together?
    Run an interaction check on {medications}.
    Please check {medications} for drug interactions.
    Can I combine {medications}?
    Check whether {medications} have any interactions.
    Any interactions between {medications}?
    I take {medications}. Please check for interactions.
    Look up interactions for {medications}.
    Check drug interactions: {medications}.
    Are there interactions among {medications}?
    Please verify that {medications} can be taken together.
    Interaction check for {medications}, please.
    Could you check if {medications} are safe together?""",
          """
    My doctor prescribed {medications}; do they clash?
    Screen {medications} against each other.
    Will {medications} cause trouble if I use them at the same time?
    Cross-reference {medications} for conflicts.
    Tell me if mixing {medications} is a problem.
    Compare {medications} for adverse combinations."""),
     Tool("send_lab_results", "Email a patient's lab results",
          {"patient_id": S, "email": EMAIL, "test": enum("blood", "urine", "allergy", "cholesterol"), "taken_on": DATE},
          ["patient_id", "email", "test"],
          lambda P: {"patient_id": P.code("P-######"), "email": P.email(),
                     "test": P.rng.choice(["blood", "urine", "allergy", "cholesterol"]), "taken_on": P.date()},
          lambda P, a: {"status": "sent"},
          "The {test} results of {patient_id} were sent to {email}.",
          """
    Email the {test} results of patient {patient_id} to {email}.
    Send the {test} test results of {patient_id} to {email}.
    Please send lab results for {patient_id} ({test} test from {taken_on}) to {email}.
    Forward the {test} results for patient {patient_id} to {email}.
    Can you email {email} the {test} test results of {patient_id}?
    Send the {test} test from {taken_on} for {patient_id} to {email}.
    Patient {patient_id} wants their {test} results sent to {email}.
    Mail {test} results for {patient_id} to {email}.
    Please share the {test} results of {patient_id} with {email}.
    Results request: {patient_id}, {test}, {email}.
    Send {email} the {test} lab results for patient {patient_id}.
    Email results of the {test} test taken on {taken_on} by {patient_id} to {email}.
    I need the {test} results of {patient_id} emailed to {email}.
    Deliver the {test} report for {patient_id} to {email}.
    Please email the {test} panel for {patient_id} to {email}.""",
          """
    {email} should get the {test} numbers for {patient_id}.
    Push the {test} findings of {patient_id} over to {email}.
    Could the {test} work-up of {patient_id} from {taken_on} go out to {email}?
    Let {email} see what the {test} test showed for {patient_id}.
    Dispatch the {test} lab sheet for {patient_id} to {email}.
    Get the {test} outcome of {patient_id} into the inbox {email}.""")],
    CHAT_SEEN + """
    Should I take {med} with food? || I can't give medical advice; please ask your doctor or pharmacist.
    What are the opening hours of your {city} branch? || Every branch is open Monday to Friday, eight to six.
    """, CHAT_UNSEEN + """
    Is {med} safe during pregnancy? || I can't give medical advice; please ask your doctor or pharmacist.
    """)

DOMAINS = {d.name: d for d in (CALENDAR, SHIPPING, CLINIC)}


# ---------------------------------------------------------------- rows
def say(value: Any, synonyms: dict, rng: random.Random) -> str:
    """How a user writes a value: verbatim, enums by their word, lists as 'a, b and c'."""
    if isinstance(value, dict):
        if "street" in value:
            return f"{value['street']}, {value['postal_code']} {value['city']}, {value['country']}"
        if "first_name" in value:
            return f"{value['first_name']} {value['last_name']} (born {value['date_of_birth']})"
        return json.dumps(value)
    if isinstance(value, list):
        items = [say(v, synonyms, rng) for v in value]
        return str(len(items)) if not items or isinstance(value[0], dict) else \
            items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    if isinstance(value, str) and value in synonyms:
        return rng.choice(synonyms[value])
    return str(value)


def slots(tpl: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", tpl))


def call_request(dom: Domain, tool: Tool, tpl: str, P: Pools) -> tuple[str, dict, str, str]:
    """(request text, arguments, tool result JSON, answer text) of one call phrased by `tpl`."""
    values = tool.draw(P)
    args = {k: v for k, v in values.items() if k in slots(tpl)}  # schema order; optional ones when stated
    text = {k: say(v, dom.synonyms, P.rng) for k, v in args.items()}
    result = tool.result(P, args)
    answer = tool.answer.format(**text, **{k: say(v, {}, P.rng) for k, v in result.items()})
    return tpl.format(**text), args, json.dumps(result), answer


def call_id(rng: random.Random) -> str:
    return f"call_{rng.getrandbits(64):016x}"


def make_row(dom: Domain, P: Pools, kind: str, phrasing: str) -> dict:
    rng = P.rng
    if kind == "none":
        request, answer = rng.choice(lines(dom.chat_seen if phrasing == "seen" else dom.chat_unseen)).split(" || ")
        fill = {"city": P.city(), "person": P.person(), "topic": P.topic(), "n": P.n(), "med": P.med(),
                "scope": dom.scope}
        turns = [{"role": "user", "content": request.format(**fill)},
                 {"role": "assistant", "content": answer.format(**fill)}]
    else:
        tools = [rng.choice(dom.tools) for _ in range(2 if kind == "parallel" else 1)]
        templates = [rng.choice(lines(getattr(t, phrasing))) for t in tools]
        parts = [call_request(dom, t, tpl, P) for t, tpl in zip(tools, templates)]
        texts = [p[0] for p in parts]
        if kind == "parallel":  # "{a} Also, {b_}": b_ is b with a lower-case first letter, unless that is a value
            b, keep_case = texts[1], templates[1].startswith("{") or re.match(r"(I|Dr)\b", texts[1])
            connect = rng.choice(CONNECT_SEEN if phrasing == "seen" else CONNECT_UNSEEN)
            texts = [connect.format(a=texts[0], b=b, b_=b if keep_case else b[0].lower() + b[1:])]
        ids = [call_id(rng) for _ in tools]
        turns = [{"role": "user", "content": texts[0]},
                 {"role": "assistant", "content": None, "tool_calls": [
                     {"id": i, "type": "function", "function": {"name": t.name, "arguments": json.dumps(p[1])}}
                     for i, t, p in zip(ids, tools, parts)]},
                 *({"role": "tool", "tool_call_id": i, "name": t.name, "content": p[2]}
                   for i, t, p in zip(ids, tools, parts)),
                 {"role": "assistant", "content": " ".join(p[3] for p in parts)}]
    return {"messages": [{"role": "system", "content": dom.system}, *turns],
            "tools": [t.declaration() for t in dom.tools]}


def leaves(value: Any):
    if isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def calls(row: dict) -> list[dict]:
    return [json.loads(c["function"]["arguments"]) for m in row["messages"] for c in m.get("tool_calls") or []]


def enums(dom: Domain) -> set[str]:
    return {v for t in dom.tools for p in t.props.values() for v in p.get("enum", [])}


def unseen(row: dict, train_text: str, train_numbers: set, skip: set[str]) -> bool:
    for v in (v for args in calls(row) for v in leaves(args)):
        if isinstance(v, str) and len(v) >= 4 and v not in skip and v in train_text:
            return False
        if multi_digit(v) and v in train_numbers:
            return False
    return True


def rows(dom: Domain, P: Pools, n: int, phrasing: str, keep=lambda row: True) -> list[str]:
    kinds = ["none"] * round(n * 0.10) + ["parallel"] * round(n * 0.15)
    kinds += ["single"] * (n - len(kinds))
    P.rng.shuffle(kinds)
    out: dict[str, None] = {}  # rows are distinct: no duplicate_example in `dsft data validate`
    for kind in kinds:
        for _ in range(200):
            row = make_row(dom, P, kind, phrasing)
            line = json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
            if line not in out and keep(row):
                break
        else:
            raise RuntimeError(f"{dom.name}: could not draw a new unseen {kind} row")
        out[line] = None
    return list(out)


def argument_numbers(text: str) -> set:
    return {v for line in text.splitlines() for args in calls(json.loads(line)) for v in leaves(args) if multi_digit(v)}


def build(name: str, seed: int = 0, n_train: int = 1500, n_test: int = 200) -> dict[str, str]:
    """The three files' text for one domain: {'train.jsonl': ..., 'test.jsonl': ..., 'test_paraphrase.jsonl': ...}."""
    dom = DOMAINS[name]
    for tool in dom.tools:
        seen, new = set(lines(tool.seen)), set(lines(tool.unseen))
        assert not seen & new, f"{tool.name}: a template is both seen and unseen"
        for tpl in seen | new:
            assert set(tool.required) <= slots(tpl) <= set(tool.props), f"{tool.name}: bad slots in {tpl!r}"
    assert not set(lines(dom.chat_seen)) & set(lines(dom.chat_unseen))
    train = "".join(rows(dom, Pools(seed, "train", random.Random(f"{seed}:{name}:train")), n_train, "seen"))
    text = compact(train, dom)
    numbers = argument_numbers(train)
    keep = lambda row: unseen(row, text, numbers, enums(dom))  # noqa: E731
    out, test_pools = {"train.jsonl": train}, Pools(seed, "test", random.Random()).without(text)
    for file, phrasing in (("test.jsonl", "seen"), ("test_paraphrase.jsonl", "unseen")):
        P = copy.copy(test_pools)
        P.rng = random.Random(f"{seed}:{name}:{file}")
        out[file] = "".join(rows(dom, P, n_test, phrasing, keep))
    return out


def compact(train: str, dom: Domain) -> str:
    """The training text with the tool list (identical in every row) kept once: the same substrings
    for values without quotes or brackets, ~5x shorter to search."""
    tools = json.dumps([t.declaration() for t in dom.tools], ensure_ascii=False, separators=(",", ":"))
    return train.replace(tools, "") + tools


def check(name: str, files: dict[str, str]) -> dict:
    """Assert what the benchmark promises, from the files' text alone; returns token-free stats."""
    dom, train = DOMAINS[name], files["train.jsonl"]
    skip = enums(dom)
    numbers = argument_numbers(train)
    try:
        import jsonschema
    except ImportError:  # the checks below still run; schema validity is also `dsft data validate`'s job
        jsonschema = None
    stats, held_out, validators = {}, set(), {}
    train_users = {json.loads(line)["messages"][1]["content"] for line in train.splitlines()}
    for file, text in files.items():
        kinds: dict[str, int] = {}
        for line in text.splitlines():
            row = json.loads(line)
            user = row["messages"][1]["content"]
            schemas = {t["function"]["name"]: t["function"]["parameters"] for t in row["tools"]}
            n_calls = sum(len(m.get("tool_calls") or []) for m in row["messages"])
            kind = {0: "none", 1: "single"}.get(n_calls, "parallel")
            kinds[kind] = kinds.get(kind, 0) + 1
            for m in row["messages"]:
                for c in m.get("tool_calls") or []:
                    args = json.loads(c["function"]["arguments"])
                    if jsonschema is not None:
                        name = c["function"]["name"]
                        if name not in validators:
                            jsonschema.validators.validator_for(schemas[name]).check_schema(schemas[name])
                            validators[name] = jsonschema.Draft202012Validator(
                                schemas[name], format_checker=jsonschema.FormatChecker())
                        validators[name].validate(args)
                    for v in leaves(args):
                        assert v in skip or str(v) in user, f"{file}: {v!r} is not verbatim in {user!r}"
            if file != "train.jsonl":
                assert user not in train_users, f"{file}: a test request is also a training request: {user!r}"
                held_out.update((v, line[:160]) for args in calls(row) for v in leaves(args))
        lens = [len(line) for line in text.splitlines()]
        talk = [len(json.dumps(json.loads(line)["messages"][1:])) for line in text.splitlines()]  # no system, no tools
        stats[file] = {"rows": len(lens), "kinds": dict(sorted(kinds.items())),
                       "mean_chars": round(sum(lens) / len(lens)),
                       "mean_chars_conversation": round(sum(talk) / len(talk))}
    for value, line in held_out:  # against the whole training file, not the compact text build() used
        assert not (isinstance(value, str) and len(value) >= 4 and value not in skip and value in train), \
            f"test value {value!r} occurs in train.jsonl: {line}"
        assert not (multi_digit(value) and value in numbers), f"test number {value!r} is a training argument: {line}"
    return stats


def write(name: str, out_dir: Path, seed: int = 0, n_train: int = 1500, n_test: int = 200) -> dict:
    """Build (twice: determinism is asserted), check and write one domain's files; returns their stats."""
    files = build(name, seed, n_train, n_test)
    assert files == build(name, seed, n_train, n_test), f"{name}: generation is not deterministic"
    stats = check(name, files)
    out_dir.mkdir(parents=True, exist_ok=True)
    for file, text in files.items():
        (out_dir / file).write_text(text, encoding="utf-8")
    return stats
