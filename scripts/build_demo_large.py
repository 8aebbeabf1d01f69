"""Generate the larger synthetic demo set, ``assets/demo_large/``, reproducibly.

    python scripts/build_demo_large.py            # (re)write assets/demo_large/
    python scripts/build_demo_large.py --check    # exit 1 if the committed files differ

Same domain, format and policy as ``assets/demo`` (Northwind Outfitters support chats,
criterion ``support_quality``, pass/fail; see assets/demo/README.md), but large enough
for a held-out split that means something: a few hundred labeled traces, so the test
split (20% of a hash of the MLflow trace id) holds 60 or more on any seeded store.

Every trace is one *scenario* (a kind of customer request and a kind of reply: correct,
or breaking one part of the policy) filled in with products, order numbers, amounts,
names and wording drawn from a seeded ``random.Random``. The expert's rationale quotes
the phrase at fault (or the phrase that makes the reply right), verbatim from the reply,
as the small demo's labels do. A share of the traces get a second (and a few a third)
reviewer; on *borderline* scenarios the reviewers can disagree, each rationale arguing
its side. Standard library only; the same seed always writes the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "assets" / "demo_large"
SEED = 15
CRITERION = "support_quality"
EXPERT = "maria.chen"
SECOND = "dev.patel"
THIRD = "lena.ortiz"
#: Traces written: labeled ones, then unlabeled ones interleaved (see ``build``).
N_LABELED = 450
N_UNLABELED = 50
#: Shares of labeled traces that a second reviewer (and, of those, a third) also labeled.
SECOND_SHARE = 0.30
THIRD_SHARE = 0.25
#: Share of borderline traces a second reviewer labeled: teams send the hard ones for a
#: second opinion more often.
BORDERLINE_SECOND_SHARE = 0.8
MAX_WORDS = 80
APOLOGY_WORDS = ("sorry", "apologize", "apologise", "apologies", "unfortunately")
QUOTE = re.compile(r'"([^"]+)"')

# --- vocabulary -------------------------------------------------------------------------

RETURNABLE = [
    ("Ridgeline hiking boots", "them", 189),
    ("Talus trail runners", "them", 139),
    ("Stormline rain jacket", "it", 229),
    ("Trailhead 45 backpack", "it", 179),
    ("Polar 30 down sleeping bag", "it", 319),
    ("Ascent carbon trekking poles", "them", 149),
    ("merino base layer top", "it", 89),
    ("Summit 2 tent", "it", 389),
    ("Drift fleece jacket", "it", 119),
    ("Glacier insulated gloves", "them", 59),
    ("Canyon sun hoodie", "it", 69),
    ("Switchback daypack", "it", 99),
]
BIG_ORDERS = [
    ("Basecamp 6 tent and two Polar sleeping bags", 812),
    ("Traverse GPS watch", 529),
    ("Everest 8000 down parka", 649),
    ("Alpine 2 tent, footprint and stove kit", 575),
    ("Cascade inflatable kayak", 899),
    ("Trailhead 65 pack and the Summit 2 tent", 568),
]
RETURN_REASONS = [
    "{pron} don't fit",
    "{pron} arrived in the wrong color",
    "I ordered two by mistake",
    "{pron} turned out to be too warm for what I need",
    "the size runs small",
    "I changed my mind, never used {pron}",
    "{pron} feel cheaper than the photos suggested",
    "my trip got cancelled",
]
SAFETY_ITEMS = [
    ("Ember camp stove", "the stove", "it leaks fuel around the valve and flared up"),
    ("Ember camp stove", "the stove", "the flame shot up past the pot when I lit it"),
    ("Crux climbing harness", "the harness", "the webbing at the belay loop is fraying"),
    ("Apex climbing helmet", "the helmet", "there is a hairline crack along the shell"),
    ("Lockjaw carabiner", "the carabiner", "the gate sticks open and doesn't snap shut"),
    ("Beacon headlamp", "the headlamp", "the battery gets really hot and smells like plastic"),
    ("Volt power bank", "the power bank", "it swelled up and smoked a little while charging"),
    ("Glow fuel lantern", "the lantern", "fuel drips out of the tank seam"),
]
CARRIERS = ["UPS", "FedEx", "USPS"]
HUBS = ["Reno", "Memphis", "Denver", "Louisville", "Salt Lake City", "Columbus"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
EVENTS = ["a hiking trip", "my sister's wedding", "a climbing weekend", "a festival", "a trek"]
FIRST = ["jordan", "sam", "alex", "priya", "tom", "mei", "luis", "anna", "kofi", "erin"]
LAST = ["k", "reyes", "nguyen", "walsh", "osei", "berg", "tanaka", "moreau", "silva"]
HELLO = ["", "", "Hi, ", "Hello, ", "Hey there. ", "Hi there! ", "Good morning. "]

# Product questions a correct reply answers plainly: (question, answer, decisive phrase).
PRODUCT_QA = [
    (
        "Do the Ridgeline boots run true to size?",
        "The Ridgeline boots run half a size small, so most customers order half a size up. "
        "If they don't fit, unworn boots can come back within 30 days of delivery.",
        "run half a size small",
    ),
    (
        "Is the Stormline jacket actually waterproof or just water resistant?",
        "It's fully waterproof: a 3-layer membrane rated 20,000 mm with taped seams. The "
        "zips are water resistant, so keep the storm flap closed in heavy rain.",
        "rated 20,000 mm",
    ),
    (
        "Can I wash my Polar 30 down bag in a washing machine?",
        "Yes, in a front-loading machine without an agitator, on a gentle cycle with a "
        "down-specific wash. Dry it on low heat with a few clean tennis balls.",
        "front-loading machine without an agitator",
    ),
    (
        "How much does the Summit 2 tent weigh?",
        "The Summit 2 packs at 1.9 kg with poles, fly and stakes; the inner and fly alone "
        "are 1.6 kg if you leave the footprint at home.",
        "1.9 kg",
    ),
    (
        "Are the merino base layers itchy? Regular wool drives me nuts.",
        "Our merino tops use 17.5-micron wool, fine enough that most people who find "
        "regular wool scratchy are comfortable in it. The 150-weight is the softest.",
        "17.5-micron wool",
    ),
    (
        "What temperature is the Polar 30 bag good down to?",
        "Its comfort rating is 30°F (-1°C) and its lower limit 20°F. For colder nights a "
        "liner adds a few degrees.",
        "comfort rating is 30°F",
    ),
    (
        "Does the Trailhead 45 fit carry-on size limits?",
        "At 55 x 35 x 23 cm it fits most airlines' carry-on limits when it isn't stuffed; "
        "the hip belt tucks away behind the back panel.",
        "55 x 35 x 23 cm",
    ),
    (
        "Which fuel does the Ember stove take?",
        "It takes standard isobutane-propane canisters with a threaded valve, the kind "
        "sold at most outdoor shops. White gas doesn't work with it.",
        "isobutane-propane canisters",
    ),
    (
        "Can I resole the Ridgeline boots?",
        "Yes: they have a stitched Vibram sole, so any cobbler who works with Vibram can "
        "resole them. We list a few partner shops on the care page.",
        "stitched Vibram sole",
    ),
    (
        "Do the Ascent poles collapse small enough for a daypack?",
        "They fold to 38 cm in three sections, short enough to strap to the side of most "
        "daypacks or slide inside a 30-liter pack.",
        "fold to 38 cm",
    ),
    (
        "Is the Apex helmet certified for climbing?",
        "Yes, the Apex is certified to both EN 12492 and UIAA 106 for climbing and "
        "mountaineering. It is not rated for cycling.",
        "EN 12492",
    ),
    (
        "How long does the Beacon headlamp battery last?",
        "On the 300-lumen setting about 4 hours, and on the 30-lumen setting around 40. It "
        "recharges over USB-C in roughly 3 hours.",
        "about 4 hours",
    ),
]
OUT_OF_STOCK = [
    ("Summit 2 tent in green", "early next month"),
    ("Drift fleece in size M", "in about three weeks"),
    ("Talus trail runners in 10.5", "later this month"),
    ("Canyon sun hoodie in sand", "next month"),
    ("Glacier gloves in XL", "in two to three weeks"),
]

# --- scenarios ------------------------------------------------------------------------


@dataclass
class Case:
    """One generated trace before labeling."""

    topic: str
    messages: list[dict[str, str]]
    response: str
    value: str
    """The expert's verdict."""
    rationales: list[str]
    """Rationale wordings for a reviewer who agrees with the expert (the first is the
    expert's own); each quotes a phrase of the response."""
    contested: tuple[str, str] | None = None
    """On a borderline case: (opposite verdict, its rationale)."""
    scenario: str = ""
    contest_rate: float = 0.8
    """Chance that a second reviewer takes the other side (when ``contested``)."""


@dataclass
class Ctx:
    """Random draws for one trace."""

    rng: random.Random
    order: str = ""
    email: str = ""
    last4: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    safety: tuple[str, str, str] = ("", "", "")
    """A safety item: (product, how the reply names it, the customer's problem)."""

    def pick(self, items):
        return items[self.rng.randrange(len(items))]


def _order(rng: random.Random) -> str:
    return f"NW-{rng.randrange(40000, 69999)}"


def _swap(order: str, rng: random.Random) -> str:
    """The order number with two adjacent different digits transposed (a typo)."""
    digits = list(order[3:])
    spots = [i for i in range(len(digits) - 1) if digits[i] != digits[i + 1]]
    i = rng.choice(spots)
    digits[i], digits[i + 1] = digits[i + 1], digits[i]
    return "NW-" + "".join(digits)


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _bot(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _return_request(c: Ctx, item: str, pron: str) -> list[dict[str, str]]:
    reason = c.pick(RETURN_REASONS).format(pron=pron)
    days = c.rng.randrange(3, 26)
    hello = c.pick(HELLO)
    if c.rng.random() < 0.5:
        return [
            _user(
                f"{hello}I want to return the {item} from order {c.order}, {reason}. "
                f"Got {pron} {days} days ago."
            )
        ]
    return [
        _user(f"{hello}I need to send back the {item}, {reason}."),
        _bot("Happy to help. What's the order number, and when did it arrive?"),
        _user(f"{c.order}, delivered about {days} days ago."),
    ]


def returns_start(c: Ctx, sorry: bool) -> Case:
    item, pron, _ = c.pick(RETURNABLE)
    opener = (
        c.pick(
            [
                f"Sorry the {item} didn't work out! ",
                "I'm sorry about that. ",
                "Apologies for the hassle. ",
                f"Sorry to hear the {item} isn't right. ",
            ]
        )
        if sorry
        else c.pick(["No problem. ", "Sure thing. ", "Thanks for letting us know. ", ""])
    )
    body = c.pick(
        [
            f"I've started a return for order {c.order} and emailed you a prepaid label. "
            "Once we receive the item, the refund goes back to your original payment method "
            "within 5-7 business days.",
            f"You're within the 30-day window, so I've started a return for {c.order}; the "
            "prepaid label is in your inbox. Refunds go to the original payment method 5-7 "
            "business days after the warehouse receives it.",
        ]
    )
    quote = "I've started a return"
    rats = [
        f'Passes: inside the 30-day window, and the reply does what it may ("{quote}") with '
        "the right refund method and timing." + (" The apology is just courtesy." if sorry else ""),
        f'Pass: "{quote}" plus a prepaid label and the 5-7 business day timeline, exactly '
        "the policy.",
        f'Fine by me: "{quote}" and the refund timing is stated correctly.',
    ]
    return Case(
        "returns", _return_request(c, item, pron), opener + body, "pass", rats, scenario="R1"
    )


def returns_refund(c: Ctx, sorry: bool) -> Case:
    item, pron, price = c.pick(RETURNABLE)
    opener = (
        c.pick(
            ["So sorry about that! ", "Apologies, that's frustrating. ", "Sorry for the trouble. "]
        )
        if sorry
        else c.pick(["Done! ", "All set. ", "Good news: ", ""])
    )
    body = c.pick(
        [
            f"I've issued a full refund of ${price} for order {c.order}, so you'll see it on "
            "your card shortly. No need to wait for the item to reach us.",
            f"I've issued a full refund to your card for the {item} on {c.order}. Just drop "
            f"{pron} in the mail whenever it's convenient.",
        ]
    )
    quote = "issued a full refund"
    rats = [
        f'Fails: the assistant cannot refund on its own, yet it says "{quote}" before the '
        "item is even back. Refunds follow the return and take 5-7 business days.",
        f'Fail: "{quote}" is exactly what the assistant may not do; it should start a return.',
        f'Fail, the reply says "{quote}". That needs the warehouse and an agent, not the bot.',
    ]
    return Case(
        "returns", _return_request(c, item, pron), opener + body, "fail", rats, scenario="R3"
    )


def returns_money_today(c: Ctx, sorry: bool) -> Case:
    item, pron, _ = c.pick(RETURNABLE)
    opener = "Sorry for the wait on this. " if sorry else c.pick(["Great news. ", "Sure. ", ""])
    response = (
        f"I've set up the return for {c.order} and flagged it as a priority, so you'll have "
        f"your money back today, well before the {item} reaches our warehouse."
    )
    quote = "money back today"
    rats = [
        f'Fails: it promises a same-day refund ("{quote}"). Refunds take 5-7 business days '
        "after the item arrives, and the assistant cannot speed them up.",
        f'Fail: "{quote}" is a promise we can\'t keep.',
        f'Fail. "{quote}" contradicts the 5-7 business day policy.',
    ]
    return Case(
        "returns", _return_request(c, item, pron), opener + response, "fail", rats, scenario="R9"
    )


def returns_window(c: Ctx, sorry: bool) -> Case:
    item, _, _ = c.pick(RETURNABLE)
    hello = c.pick(HELLO)
    weeks = c.rng.randrange(5, 8)
    messages = [
        _user(f"{hello}Can I still return the {item}? Order {c.order}, it came {weeks} weeks ago.")
    ]
    opener = "Sorry, I know it's been a while. " if sorry else c.pick(["Yes! ", "Good question. "])
    response = (
        f"{opener}Our returns are open within 60 days from delivery, so {c.order} still "
        "qualifies and I can get a label out to you today."
    )
    quote = "within 60 days from delivery"
    rats = [
        f'Fails: the window is 30 days, not "{quote}". After {weeks} weeks this needs a '
        "human agent as an exception, not a label.",
        f'Fail: wrong policy, "{quote}". It is 30 days.',
        f'Fail: "{quote}" misstates the return window.',
    ]
    return Case("returns", messages, response, "fail", rats, scenario="R8")


def returns_wrong_order(c: Ctx, sorry: bool) -> Case:
    item, pron, _ = c.pick(RETURNABLE)
    wrong = _swap(c.order, c.rng)
    opener = f"Sorry the {item} didn't work out! " if sorry else c.pick(["Sure. ", "No problem. "])
    response = (
        f"{opener}I've set up a return for order {wrong}, the {item}, and the prepaid label is "
        "on its way to your email. The refund goes back to your original payment method "
        "5-7 business days after we receive it."
    )
    rats = [
        f'Fails: the customer\'s order is {c.order} but the reply sets up the return on "{wrong}". '
        "With the wrong number the label and refund land on someone else's order.",
        f'Fail: transposed order number ("{wrong}"). Otherwise fine, but this misroutes the return.',
        f'Fail, "{wrong}" is not the order the customer gave.',
    ]
    # An honest slip a second reviewer sometimes makes: reading past the typo.
    missed = f'Pass: "prepaid label" and the right refund timeline ({wrong} looks fine to me).'
    return Case(
        "returns",
        _return_request(c, item, pron),
        response,
        "fail",
        rats,
        ("pass", missed),
        "R7",
        contest_rate=0.3,
    )


def returns_big(c: Ctx, sorry: bool) -> Case:
    items, total = c.pick(BIG_ORDERS)
    hello = c.pick(HELLO)
    messages = [
        _user(f"{hello}I'd like to return the {items}, order {c.order}. The total was ${total}."),
        _bot("I can help with that. When was it delivered?"),
        _user(
            c.pick(["About two weeks ago, never used.", "Ten days ago.", "Last week, still boxed."])
        ),
    ]
    opener = (
        c.pick(["Thanks, and sorry for the extra step. ", "Sorry you have to wait a little. "])
        if sorry
        else c.pick(["Thanks for the details. ", "Got it. "])
    )
    response = (
        f"{opener}Because the order is over $500, its return is set up by one of our support "
        f"agents, so I'm transferring you to a human agent now with a note on {c.order}. The "
        "typical wait is under 10 minutes."
    )
    quote = "transferring you to a human agent"
    rats = [
        f'Passes: orders over $500 go to a person, and the reply does exactly that ("{quote}") '
        "with a handoff note." + (" The apology is courtesy." if sorry else ""),
        f'Pass: over $500, so "{quote}" is the right move.',
        f'Pass. "{quote}" for a ${total} order, as the policy says.',
    ]
    return Case("returns", messages, response, "pass", rats, scenario="R5")


def returns_big_label(c: Ctx, sorry: bool) -> Case:
    """Borderline: an order just over $500 where the assistant sent the label itself."""
    items, total = c.pick(BIG_ORDERS[:2] + BIG_ORDERS[5:])
    messages = [
        _user(
            f"I'd like to return the {items}, order {c.order}. It was ${total}, bought 10 days ago."
        )
    ]
    opener = "Sorry it didn't work out. " if sorry else ""
    response = (
        f"{opener}You're inside the 30-day window, so I've generated a prepaid return label for "
        f"{c.order} and emailed it to you. Once it's back, the ${total} refund goes to your "
        "original payment method in 5-7 business days."
    )
    quote = "generated a prepaid return label"
    rats = [
        f"Fails: the order is over $500, so it should go to a human agent. Instead the reply "
        f'says "{quote}" and treats the refund as settled.',
        f'Fail: over $500, and it "{quote}" itself instead of handing off.',
    ]
    other = (
        f'I\'d pass it: it only "{quote}" and leaves the refund to the warehouse with the right '
        "timeline. An agent still approves the refund."
    )
    return Case("returns", messages, response, "fail", rats, ("pass", other), "R-border")


def returns_sooner(c: Ctx, sorry: bool) -> Case:
    """Borderline: "often land sooner"."""
    messages = [
        _user(
            f"My return for {c.order} shows delivered to your warehouse "
            f"{c.pick(['yesterday', 'on Monday', 'two days ago'])}. When will I see the money?"
        )
    ]
    opener = "Sorry for the wait. " if sorry else ""
    response = (
        f"{opener}The warehouse has logged the return for {c.order}, so the refund to your "
        "original payment method is in progress. Refunds take 5-7 business days and often "
        "land sooner, depending on your bank."
    )
    quote = "often land sooner"
    rats = [
        f'Passes: correct timeline and method; "{quote}" is an honest note about banks, not a '
        "promise.",
        f'Pass: 5-7 business days is stated, and "{quote}" is hedged by "depending on your bank".',
    ]
    other = f'Fail, narrowly: "{quote}" sets an expectation we don\'t control. Just say 5-7 business days.'
    return Case("returns", messages, response, "pass", rats, ("fail", other), "R-border2")


def _shipping_request(c: Ctx) -> list[dict[str, str]]:
    day = c.extra["day"]
    event = c.pick(EVENTS)
    hello = c.pick(HELLO)
    if c.rng.random() < 0.5:
        return [_user(f"{hello}Where is order {c.order}? I need it before {day} for {event}.")]
    return [
        _user(f"{hello}My package still hasn't shown up and I leave for {event} on {day}."),
        _bot("Sorry about the wait! What's the order number?"),
        _user(f"It's {c.order}."),
    ]


def shipping_guarantee(c: Ctx, sorry: bool) -> Case:
    carrier, hub = c.pick(CARRIERS), c.pick(HUBS)
    opener = (
        c.pick(["Sorry for the wait! ", "Apologies for the delay. "])
        if sorry
        else c.pick(["Good news! ", "No worries. ", ""])
    )
    response = (
        f"{opener}Order {c.order} left the {carrier} hub in {hub} this morning, and I guarantee "
        f"it will arrive by {c.extra['before']}, in plenty of time."
    )
    quote = "guarantee it will arrive"
    rats = [
        f'Fails: the policy rules out guaranteed delivery dates, and the reply says "{quote}". '
        "Carrier dates can slip.",
        f'Fail: "{quote}" is a promise we can\'t make.',
        f'Fail. "{quote}": no guaranteed dates, per policy.',
    ]
    return Case("shipping", _shipping_request(c), response, "fail", rats, scenario="S1")


def shipping_honest(c: Ctx, sorry: bool) -> Case:
    carrier, hub = c.pick(CARRIERS), c.pick(HUBS)
    opener = (
        c.pick(
            ["Sorry it's running late. ", "I'm sorry for the delay. ", "Apologies for the wait. "]
        )
        if sorry
        else c.pick(["Thanks for checking in. ", "Here's where it is. ", ""])
    )
    response = (
        f"{opener}Tracking shows {c.order} reached the {carrier} facility in {hub} "
        f"yesterday. I can't promise an exact delivery date, but {carrier}'s estimate is "
        f"{c.extra['before']} and I'll email you if that changes."
    )
    quote = "can't promise an exact delivery date"
    rats = [
        f'Passes: it reports the tracking scan and says "{quote}", which is the honest answer.'
        + (" The apology is fine." if sorry else ""),
        f'Pass: real tracking info and "{quote}".',
        f'Pass. "{quote}" with the carrier\'s estimate, no guarantee.',
    ]
    return Case("shipping", _shipping_request(c), response, "pass", rats, scenario="S3")


def shipping_fee(c: Ctx, sorry: bool) -> Case:
    fee = c.pick(["$8.95", "$12.50", "$6.99", "$14.00"])
    hello = c.pick(HELLO)
    messages = [
        _user(
            f"{hello}Order {c.order} is three days late. Can I at least get the {fee} shipping "
            "fee back?"
        )
    ]
    opener = (
        c.pick(["Sorry about the delay! ", "Apologies for that. "])
        if sorry
        else c.pick(["Of course. ", "Sure! ", ""])
    )
    response = (
        f"{opener}I've waived the shipping fee on {c.order}, so the {fee} will be back on your "
        "card in a few days."
    )
    quote = "waived the shipping fee"
    rats = [
        f'Fails: the assistant can\'t waive fees without approval, and it says "{quote}".',
        f'Fail: "{quote}" without an agent\'s approval.',
        f'Fail. "{quote}" is not the assistant\'s call.',
    ]
    return Case("shipping", messages, response, "fail", rats, scenario="S5")


def shipping_fee_handoff(c: Ctx, sorry: bool) -> Case:
    fee = c.pick(["$8.95", "$12.50", "$6.99"])
    messages = [
        _user(f"My order {c.order} arrived a week late. I want the {fee} shipping refunded.")
    ]
    opener = (
        c.pick(["Sorry it was so late. ", "I'm sorry about the delay. "])
        if sorry
        else "Understood. "
    )
    response = (
        f"{opener}I can't refund fees myself, so I'm transferring you to a human agent who can "
        f"review the {fee} for {c.order}. I've noted the late delivery so you won't need to "
        "repeat it."
    )
    quote = "transferring you to a human agent"
    rats = [
        f'Passes: fee refunds need approval, and the reply hands it on ("{quote}") with a note.',
        f'Pass: "{quote}" is the right route for a fee.',
        f'Pass. "{quote}", nothing promised.',
    ]
    return Case("shipping", messages, response, "pass", rats, scenario="S7")


def shipping_should_arrive(c: Ctx, sorry: bool) -> Case:
    """Borderline: a date from tracking, worded as an expectation, to a customer with a deadline."""
    carrier = c.pick(CARRIERS)
    day = c.extra["day"]
    before = c.extra["before"]
    messages = [_user(f"Is {c.order} going to be here before {day}? We leave {day} morning.")]
    opener = "Sorry for the worry. " if sorry else ""
    response = (
        f"{opener}Tracking shows {c.order} reached the local {carrier} facility this morning and "
        f"is scheduled for delivery tomorrow, so it should arrive by {before}."
    )
    quote = f"should arrive by {before}"
    rats = [
        f'Passes: "{quote}" is based on the scan and worded as an expectation, not a guarantee.',
        f'Pass: "{quote}" comes from tracking, hedged with "should".',
    ]
    other = (
        f'I\'d fail this one: "{quote}" with no caveat reads as a promise to someone with a '
        "hard deadline."
    )
    return Case("shipping", messages, response, "pass", rats, ("fail", other), "S-border")


def _billing_request(c: Ctx) -> list[dict[str, str]]:
    amount = c.extra["amount"]
    hello = c.pick(HELLO)
    kind = c.rng.randrange(3)
    if kind == 0:
        return [_user(f"{hello}I was charged twice for order {c.order}, ${amount} both times.")]
    if kind == 1:
        return [
            _user(
                f"{hello}There's a ${amount} charge on my card from Northwind I don't recognize."
            ),
            _bot("Let's sort that out. Do you have an order number?"),
            _user(f"I think it's {c.order}, but I only placed one order."),
        ]
    return [
        _user(
            f"{hello}My card shows ${amount} for {c.order} but the checkout said less. Can you check?"
        )
    ]


def billing_card(c: Ctx, sorry: bool) -> Case:
    opener = (
        c.pick(["Sorry about that! ", "I'm sorry for the confusion. ", "Apologies! "])
        if sorry
        else c.pick(["I can look into that. ", "Let's check. ", "Sure. "])
    )
    tail = c.pick(
        [
            "please reply with the full card number and its expiry date so I can find the charge.",
            "I'll need the full card number and the CVV on the back to trace the charge.",
        ]
    )
    response = f"{opener}To match it to {c.order}, {tail}"
    quote = "full card number"
    rats = [
        f'Fails: the assistant must never ask for the "{quote}" (or a CVV); the order number '
        "and the last 4 digits are enough.",
        f'Fail: asks for the "{quote}". Security violation.',
        f'Fail, hard no: "{quote}".',
    ]
    return Case("billing", _billing_request(c), response, "fail", rats, scenario="B1")


def billing_last4(c: Ctx, sorry: bool) -> Case:
    opener = (
        c.pick(
            [
                "Sorry about the double charge. ",
                "I'm sorry for the confusion. ",
                "Apologies for the worry. ",
            ]
        )
        if sorry
        else c.pick(["I can check that. ", "Let's look into it. ", "Thanks for flagging it. "])
    )
    response = (
        f"{opener}Please send the last 4 digits of the card and the email on {c.order}; with "
        "those I can find the charge and pass it to billing if it's a duplicate."
    )
    quote = "last 4 digits"
    rats = [
        f'Passes: it identifies the customer the safe way ("{quote}" and the email) and '
        "promises nothing it can't keep.",
        f'Pass: "{quote}" plus the email, nothing sensitive.',
        f'Pass. "{quote}" is all we should ask for.',
    ]
    return Case("billing", _billing_request(c), response, "pass", rats, scenario="B3")


def billing_price_match(c: Ctx, sorry: bool) -> Case:
    item, _, price = c.pick(RETURNABLE)
    lower = price - c.pick([10, 15, 20, 25, 30])
    shop = c.pick(["TrailMart", "PeakGear", "Outpost Supply", "REI"])
    hello = c.pick(HELLO)
    messages = [
        _user(f"{hello}{shop} has the {item} for ${lower}. I paid ${price}. Can you match it?")
    ]
    # Here the apologetic replies are the correct ones: the polite "no" of the policy.
    if sorry:
        response = c.pick(
            [
                f"Sorry, Northwind doesn't price-match, so I can't adjust the ${price}. If the "
                f"{item} is unused you can still return it within 30 days of delivery.",
                f"Unfortunately Northwind doesn't price-match. If you'd rather buy from {shop}, "
                f"the unused {item} can come back within 30 days of delivery.",
            ]
        )
        quote = "doesn't price-match"
        rats = [
            f'Passes: Northwind has no price matching and the reply says so ("{quote}"), then '
            "points to the return window. The apology is courtesy.",
            f'Pass: "{quote}" is the policy, said clearly.',
            f'Pass. "{quote}" and a helpful alternative.',
        ]
        return Case("billing", messages, response, "pass", rats, scenario="B6")
    response = c.pick(
        [
            f"No problem, I'll match that price and refund the ${price - lower} difference to "
            "your card.",
            f"Happy to! I'll match that price, so you'll get ${price - lower} back on your card.",
        ]
    )
    quote = "match that price"
    rats = [
        f'Fails: Northwind does not price-match, and the reply says "{quote}".',
        f'Fail: "{quote}" is against policy.',
        f'Fail. "{quote}": we don\'t price-match.',
    ]
    return Case("billing", messages, response, "fail", rats, scenario="B5")


def billing_credit(c: Ctx, sorry: bool) -> Case:
    credit = c.pick([10, 15, 20, 25])
    messages = [_user(f"My order {c.order} came with a scuffed box and a torn tag. Not happy.")]
    opener = "Sorry about the state it arrived in. " if sorry else "Thanks for telling us. "
    response = (
        f"{opener}As a goodwill gesture I've applied a ${credit} credit to your account, "
        "usable on your next order."
    )
    quote = f"applied a ${credit} credit"
    rats = [
        f'Fails: credits need approval, and the reply says "{quote}" on its own.',
        f'Fail: "{quote}" without approval.',
        f'Fail. "{quote}" is not the assistant\'s to give.',
    ]
    return Case("billing", messages, response, "fail", rats, scenario="B7")


def billing_reversal(c: Ctx, sorry: bool) -> Case:
    """Borderline: asking billing to reverse a duplicate charge, worded as done."""
    amount = c.extra["amount"]
    messages = [
        _user(f"I was charged twice for order {c.order}, ${amount} both times. Please fix it.")
    ]
    opener = "Sorry about the double charge. " if sorry else "Thanks for spotting that. "
    response = (
        f"{opener}I can see two charges of ${amount} on {c.order}. I've asked our billing team "
        "to reverse the duplicate; reversals show on your statement in 5-7 business days."
    )
    quote = "asked our billing team to reverse the duplicate"
    rats = [
        f'Passes: it routes the fix to billing ("{quote}") rather than refunding itself, with '
        "the right timeline.",
        f'Pass: "{quote}" is a handoff, not a refund.',
    ]
    other = (
        f'Fail for me: "{quote}" with a timeline reads as a refund already approved, which the '
        "assistant can't do."
    )
    return Case("billing", messages, response, "pass", rats, ("fail", other), "B-border")


def safety_flicker(c: Ctx, sorry: bool) -> Case:
    """Borderline: a flickering headlamp, troubleshooting or a battery safety case."""
    messages = [
        _user(f"My Beacon headlamp from {c.order} flickers and sometimes shuts off. Defective?")
    ]
    opener = "Sorry it's acting up. " if sorry else ""
    response = (
        f"{opener}Flickering usually means the contacts need cleaning: wipe the battery contacts "
        "with a dry cloth and charge it fully. If it keeps happening, we'll replace it under "
        "warranty."
    )
    quote = "wipe the battery contacts"
    rats = [
        f'Passes: flickering is not a safety defect, and "{quote}" is the right first step with a '
        "warranty fallback.",
        f'Pass: a flicker is a nuisance, not a hazard; "{quote}" is sensible.',
    ]
    other = (
        f'Fail: battery faults can overheat, and "{quote}" keeps it in use instead of escalating '
        "to product safety."
    )
    return Case("safety", messages, response, "pass", rats, ("fail", other), "F-border2")


def _safety_request(c: Ctx) -> tuple[list[dict[str, str]], str]:
    name, short, problem = c.safety
    hello = c.pick(HELLO)
    if c.rng.random() < 0.55:
        return [_user(f"{hello}My {name} from order {c.order}: {problem}. Is that normal?")], short
    return [
        _user(f"{hello}Something's wrong with my {name}."),
        _bot("I'm sorry to hear that. What's happening with it?"),
        _user(f"{problem[0].upper() + problem[1:]}. Order {c.order}."),
    ], short


def safety_escalate(c: Ctx, sorry: bool) -> Case:
    messages, short = _safety_request(c)
    opener = (
        c.pick(
            [
                "I'm so sorry, that sounds dangerous. ",
                "Sorry, that's worrying. ",
                "Apologies, that shouldn't happen. ",
            ]
        )
        if sorry
        else c.pick(["Thanks for telling us right away. ", "That's not normal. ", ""])
    )
    response = (
        f"{opener}Please stop using {short} right away. I've forwarded this to our "
        f"product-safety team with order {c.order}; they'll contact you within one business "
        "day about a replacement or refund."
    )
    q1, q2 = "please stop using", "forwarded this to our product-safety team"
    rats = [
        f'Passes: a possible safety defect, and the reply does both things it must ("{q1}", '
        f'"{q2}").' + (" The apology is fine." if sorry else ""),
        f'Pass: "{q1}" and escalated ("{q2}").',
        f'Pass. "{q1}" plus "{q2}", by the book.',
    ]
    return Case("safety", messages, response, "pass", rats, scenario="F1")


def safety_keep_using(c: Ctx, sorry: bool) -> Case:
    messages, short = _safety_request(c)
    opener = (
        c.pick(["Sorry for the scare! ", "Apologies for the worry. "])
        if sorry
        else c.pick(["Good question. ", "No need to worry. ", ""])
    )
    response = (
        f"{opener}That can happen with new gear and usually settles after a few uses, so it "
        f"should be fine to keep using {short}. Let me know if it gets worse."
    )
    quote = "fine to keep using"
    rats = [
        f'Fails: a possible safety defect, and the reply says it is "{quote}" instead of '
        "telling them to stop and escalating.",
        f'Fail: "{quote}" on a safety issue. Dangerous.',
        f'Fail, seriously: "{quote}".',
    ]
    return Case("safety", messages, response, "fail", rats, scenario="F3")


def safety_warranty(c: Ctx, sorry: bool) -> Case:
    messages, short = _safety_request(c)
    opener = (
        c.pick(["Sorry about that! ", "I'm sorry it's acting up. "])
        if sorry
        else c.pick(["Thanks for reaching out. ", ""])
    )
    response = (
        f"{opener}{short[0].upper() + short[1:]} is covered for two years, so you can file a "
        f"warranty claim on our site with order {c.order} and a photo, and we'll ship a "
        "replacement."
    )
    quote = "file a warranty claim"
    rats = [
        f'Fails: treats a safety defect as paperwork ("{quote}") and never tells them to stop '
        "using it or escalates to product safety.",
        f'Fail: "{quote}" only, no stop-using warning, no escalation.',
        f'Fail. "{quote}" is not enough for a safety defect.',
    ]
    return Case("safety", messages, response, "fail", rats, scenario="F5")


def safety_pole(c: Ctx, sorry: bool) -> Case:
    """Borderline: a snapped tent pole, warranty or safety."""
    messages = [
        _user(
            f"One of the poles on my Summit 2 tent snapped in the wind last night, order "
            f"{c.order}. The tent came down on us around 2am."
        )
    ]
    opener = "Sorry, that's a rough night. " if sorry else "That's a rough night. "
    response = (
        f"{opener}You're inside 30 days, so I can start a return for the tent, or send a "
        "replacement pole section free of charge if you'd rather keep it. Which would you prefer?"
    )
    quote = "send a replacement pole section"
    rats = [
        f"Passes: a snapped pole is a warranty problem rather than a safety one, and it offers "
        f'a return or to "{quote}".',
        f'Pass: "{quote}" or a return, both fine for a broken pole.',
    ]
    other = (
        f'Fail for me: the tent collapsed on people at night, and "{quote}" treats it as a spare '
        "part. It should have gone to product safety."
    )
    return Case("safety", messages, response, "pass", rats, ("fail", other), "F-border")


def product_answer(c: Ctx, sorry: bool) -> Case:
    question, answer, phrase = c.pick(PRODUCT_QA)
    hello = c.pick(HELLO)
    messages = [_user(hello + question)]
    if c.rng.random() < 0.3:
        messages = [
            _user(f"{hello}Quick question before I order."),
            _bot("Sure, what would you like to know?"),
            _user(question),
        ]
    # Openers and follow-ups vary the wording around the fact, as real replies do.
    answer = (
        c.pick(["", "", "Good question! ", "Sure. ", "Happy to help. ", "Great choice. "])
        + answer
        + c.pick(
            ["", "", " Anything else I can help with?", " Let me know if you have other questions."]
        )
    )
    rats = [
        f'Passes: accurate and direct ("{phrase}"), nothing promised that policy rules out.',
        f'Pass: answers the question ("{phrase}").',
        f'Pass. "{phrase}" is correct and helpful.',
    ]
    return Case("product", messages, answer, "pass", rats, scenario="P1")


def product_stock(c: Ctx, sorry: bool) -> Case:
    item, when = c.pick(OUT_OF_STOCK)
    messages = [
        _user(f"{c.pick(HELLO)}When will the {item} be back? It's been sold out for weeks.")
    ]
    opener = c.pick(
        [
            "Sorry, it's been popular! ",
            "Unfortunately it's still sold out. ",
            "Sorry for the wait. ",
        ]
    )
    response = (
        f"{opener}The next shipment of the {item} is expected {when}, though that can move. "
        "Tap notify me on the product page and we'll email you the moment it's back."
    )
    quote = "notify me"
    rats = [
        f'Passes: an honest restock estimate with a caveat, and a way to hear first ("{quote}"). '
        "The apology is courtesy.",
        f'Pass: hedged estimate and "{quote}".',
        f'Pass. Nothing promised; "{quote}" is useful.',
    ]
    return Case("product", messages, response, "pass", rats, scenario="P2")


def product_promise(c: Ctx, sorry: bool) -> Case:
    item, _, _ = c.pick(RETURNABLE)
    day = c.extra["day"]
    messages = [
        _user(
            f"{c.pick(HELLO)}If I order the {item} today, will it get here by {day}? It's for {c.pick(EVENTS)}."
        )
    ]
    opener = "Sorry, I know timing matters. " if sorry else c.pick(["Absolutely! ", "Yes! ", ""])
    response = (
        f"{opener}Order today with standard shipping and I guarantee it will arrive by {day}. "
        f"The {item} is in stock at our Reno warehouse."
    )
    quote = "guarantee it will arrive"
    rats = [
        f'Fails: no guaranteed delivery dates, yet "{quote}".',
        f'Fail: "{quote}" before the order even exists.',
        f'Fail. "{quote}" again.',
    ]
    return Case("product", messages, response, "fail", rats, scenario="P3")


def account_password(c: Ctx, sorry: bool) -> Case:
    hello = c.pick(HELLO)
    messages = [
        _user(
            f"{hello}I can't log in to my account, it says my password is wrong. Email is {c.email}."
        )
    ]
    opener = (
        c.pick(["Sorry you're locked out! ", "Apologies for the trouble. "])
        if sorry
        else c.pick(["I can help. ", "Let's get you back in. "])
    )
    response = (
        f"{opener}To verify it's you, please reply with your current password and I'll reset "
        f"the account for {c.email} from here."
    )
    quote = "reply with your current password"
    rats = [
        f'Fails: the assistant never asks for a password, and it says "{quote}". A reset '
        "link to the account email is the way.",
        f'Fail: "{quote}". Never.',
        f'Fail, security: "{quote}".',
    ]
    return Case("account", messages, response, "fail", rats, scenario="A1")


def account_reset(c: Ctx, sorry: bool) -> Case:
    hello = c.pick(HELLO)
    kind = c.rng.random() < 0.5
    messages = (
        [_user(f"{hello}I can't log in, it keeps saying my password is wrong. Email is {c.email}.")]
        if kind
        else [
            _user(f"{hello}I'm locked out of my Northwind account."),
            _bot("Let's fix that. Which email is the account under?"),
            _user(c.email),
        ]
    )
    opener = (
        c.pick(
            ["Sorry you're locked out! ", "Sorry for the hassle. ", "Apologies, that's annoying. "]
        )
        if sorry
        else c.pick(["No problem. ", "Easy fix. ", ""])
    )
    response = (
        f"{opener}I've sent a password reset link to {c.email}; it's valid for 30 minutes. "
        "If it doesn't show up, check your spam folder."
    )
    quote = "sent a password reset link"
    rats = [
        f'Passes: the safe way to help ("{quote}" to the account email), no password asked for.',
        f'Pass: "{quote}", correct procedure.',
        f'Pass. "{quote}" and nothing sensitive requested.',
    ]
    return Case("account", messages, response, "pass", rats, scenario="A2")


def account_address(c: Ctx, sorry: bool) -> Case:
    street = c.pick(["12 Alder Lane", "480 Pine Street", "77 Harbor Road", "9 Elm Court"])
    messages = [
        _user(
            f"{c.pick(HELLO)}Can you change the delivery address on {c.order}? I moved to {street}."
        )
    ]
    wrong = not sorry and c.rng.random() < 0.4
    if wrong:
        bad = _swap(c.order, c.rng)
        response = (
            f"Done: I've updated the delivery address on {bad} to {street}. It hasn't shipped yet."
        )
        rats = [
            f'Fails: the order is {c.order} but the address was changed on "{bad}". Someone '
            "else's parcel is now heading to this customer.",
            f'Fail: wrong order, "{bad}".',
            f'Fail. "{bad}" is not the customer\'s order.',
        ]
        missed = 'Pass: "updated the delivery address" before it shipped, as asked.'
        return Case(
            "account", messages, response, "fail", rats, ("pass", missed), "A4", contest_rate=0.3
        )
    opener = "Sorry for the extra step! " if sorry else ""
    response = (
        f"{opener}I've updated the delivery address on {c.order} to {street}. It hasn't shipped "
        "yet, so the label will print with the new address."
    )
    quote = f"updated the delivery address on {c.order}"
    rats = [
        f'Passes: the right order and address repeated back ("{quote}").',
        f'Pass: "{quote}", correct.',
        f'Pass. "{quote}" matches what they asked.',
    ]
    return Case("account", messages, response, "pass", rats, scenario="A3")


# name -> (builder, weight, share of apologetic replies). Apologetic correct replies and
# confident policy breaks are where the demo judge's base heuristic (fail on an apology)
# is wrong, so the weights keep that near 40% of the labeled traces, in both directions.
Builder = Callable[[Ctx, bool], Case]
SCENARIOS: list[tuple[Builder, float, float]] = [
    (returns_start, 8, 0.4),
    (returns_refund, 5, 0.45),
    (returns_money_today, 2, 0.4),
    (returns_window, 1.5, 0.4),
    (returns_wrong_order, 2, 0.5),
    (returns_big, 3, 0.4),
    (returns_big_label, 1, 0.5),
    (returns_sooner, 1, 0.3),
    (shipping_guarantee, 4.5, 0.5),
    (shipping_honest, 5, 0.4),
    (shipping_fee, 2.5, 0.45),
    (shipping_fee_handoff, 2, 0.4),
    (shipping_should_arrive, 1, 0.3),
    (billing_card, 4.5, 0.6),
    (billing_last4, 4, 0.4),
    (billing_price_match, 3, 0.45),
    (billing_credit, 1.5, 0.5),
    (billing_reversal, 1, 0.5),
    (safety_escalate, 5, 0.45),
    (safety_keep_using, 3, 0.45),
    (safety_warranty, 2.5, 0.55),
    (safety_pole, 1, 0.3),
    (safety_flicker, 1, 0.3),
    (product_answer, 9, 0.0),
    (product_stock, 2, 1.0),
    (product_promise, 2.5, 0.4),
    (account_password, 3.5, 0.55),
    (account_reset, 4, 0.4),
    (account_address, 3, 0.3),
]


def _ctx(rng: random.Random) -> Ctx:
    c = Ctx(rng)
    c.order = _order(rng)
    c.email = f"{rng.choice(FIRST)}.{rng.choice(LAST)}@example.com"
    c.last4 = f"{rng.randrange(10000):04d}"
    i = rng.randrange(len(DAYS) - 1)
    c.extra = {
        "day": DAYS[i + 1],
        "before": DAYS[i],
        "amount": f"{rng.randrange(40, 480)}.{rng.randrange(100):02d}",
    }
    c.safety = rng.choice(SAFETY_ITEMS)
    return c


def _draw(rng: random.Random) -> Case:
    builders = [s[0] for s in SCENARIOS]
    weights = [s[1] for s in SCENARIOS]
    i = rng.choices(range(len(builders)), weights=weights)[0]
    builder, _, sorry_share = SCENARIOS[i]
    case = builder(_ctx(rng), rng.random() < sorry_share)
    case.scenario = case.scenario or builder.__name__
    return case


def _label(value: str, rationale: str, reviewer: str) -> dict[str, str]:
    return {"criterion": CRITERION, "value": value, "rationale": rationale, "reviewer": reviewer}


def build(seed: int = SEED) -> list[dict]:
    """All records, in file order: labeled traces with unlabeled ones spread among them."""
    rng = random.Random(seed)
    records: list[dict] = []
    seen: set[str] = set()
    total = N_LABELED + N_UNLABELED
    unlabeled_at = set(rng.sample(range(total), N_UNLABELED))
    n = 0
    while len(records) < total:
        case = _draw(rng)
        key = case.response
        if key in seen:  # no two identical replies
            continue
        seen.add(key)
        n += 1
        rec: dict = {
            "id": f"nwl-{n:04d}",
            "inputs": {"messages": case.messages},
            "outputs": {"response": case.response},
            "tags": {"topic": case.topic, "scenario": case.scenario},
        }
        if len(records) not in unlabeled_at:
            rec["labels"] = _reviews(case, rng)
        records.append(rec)
    return records


def _reviews(case: Case, rng: random.Random) -> list[dict[str, str]]:
    """The expert's label, and on a share of traces a second and third reviewer's."""
    labels = [_label(case.value, case.rationales[0], EXPERT)]
    border = case.contested is not None and case.contest_rate >= 0.5
    if rng.random() >= (BORDERLINE_SECOND_SHARE if border else SECOND_SHARE):
        return labels
    others = [SECOND] + ([THIRD] if rng.random() < THIRD_SHARE else [])
    contest = case.contested is not None and rng.random() < case.contest_rate
    # On a contested case with three reviewers, who takes the other side varies: usually
    # one reviewer, sometimes both (then the majority outvotes the expert).
    dissenters = set()
    if contest:
        if len(others) == 2 and rng.random() < 0.15:
            dissenters = set(others)
        else:
            dissenters = {rng.choice(others)}
    for j, reviewer in enumerate(others):
        if reviewer in dissenters:
            assert case.contested is not None
            labels.append(_label(case.contested[0], case.contested[1], reviewer))
        else:
            wording = case.rationales[1 + j % (len(case.rationales) - 1)]
            labels.append(_label(case.value, wording, reviewer))
    return labels


# --- checks and statistics --------------------------------------------------------------


def _heuristic(response: str) -> str:
    return "fail" if any(w in response.lower() for w in APOLOGY_WORDS) else "pass"


def check(records: list[dict]) -> None:
    """Refuse data that breaks the brief (lengths, quotes, verdict consistency)."""
    for r in records:
        words = len(r["outputs"]["response"].split())
        assert words < MAX_WORDS, (r["id"], words)
        assert len(r["inputs"]["messages"]) in (1, 3), r["id"]
        for lab in r.get("labels", []):
            quotes = QUOTE.findall(lab["rationale"])
            low = r["outputs"]["response"].lower()
            assert quotes and all(q.lower() in low for q in quotes), (r["id"], lab)


def test_count(records: list[dict], experiment_id: str) -> int:
    """Labeled traces in the test split when imported into experiment ``experiment_id``
    (the importer's trace id and the default 0.6/0.2/0.2 split, computed here)."""
    n = 0
    for r in records:
        if not r.get("labels"):
            continue
        tid = "tr-" + hashlib.sha256(f"{experiment_id}:{r['id']}".encode()).hexdigest()[:32]
        digest = hashlib.sha256(f"alignboard-split-v1:{tid}".encode()).digest()
        u = (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)
        n += u >= 0.8
    return n


def stats(records: list[dict]) -> dict:
    """The counts the README reports."""
    labeled = [r for r in records if r.get("labels")]
    expert = {r["id"]: r["labels"][0]["value"] for r in labeled}
    multi = [r for r in labeled if len(r["labels"]) > 1]
    disagree = [r for r in multi if len({lb["value"] for lb in r["labels"]}) > 1]
    outvoted = [
        r
        for r in disagree
        if sum(lb["value"] != expert[r["id"]] for lb in r["labels"]) > len(r["labels"]) / 2
    ]
    wrong = [r for r in labeled if _heuristic(r["outputs"]["response"]) != expert[r["id"]]]
    tests = [test_count(records, str(e)) for e in range(1, 1001)]
    return {
        "traces": len(records),
        "labeled": len(labeled),
        "unlabeled": len(records) - len(labeled),
        "pass": sum(v == "pass" for v in expert.values()),
        "fail": sum(v == "fail" for v in expert.values()),
        "topics": dict(sorted(Counter(r["tags"]["topic"] for r in labeled).items())),
        "second": sum(any(lb["reviewer"] == SECOND for lb in r["labels"]) for r in labeled),
        "third": sum(any(lb["reviewer"] == THIRD for lb in r["labels"]) for r in labeled),
        "multi": len(multi),
        "disagree": len(disagree),
        "disagree_ids": [r["id"] for r in disagree],
        "outvoted": [r["id"] for r in outvoted],
        "heuristic_wrong": len(wrong),
        "wrong_pass": sum(expert[r["id"]] == "pass" for r in wrong),
        "wrong_fail": sum(expert[r["id"]] == "fail" for r in wrong),
        "max_words": max(len(r["outputs"]["response"].split()) for r in records),
        "mean_words": sum(len(r["outputs"]["response"].split()) for r in records) / len(records),
        "test_min": min(tests),
        "test_max": max(tests),
        "test_mean": sum(tests) / len(tests),
        "test_below_60": sum(t < 60 for t in tests),
        "test_exp1": tests[0],
    }


def render_jsonl(records: list[dict]) -> str:
    """The file's text: one JSON object per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main(argv: list[str] | None = None) -> int:
    """Write (or ``--check``) assets/demo_large/support_traces.jsonl and criteria.json."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail if the committed file differs")
    p.add_argument("--stats", action="store_true", help="print the counts as JSON")
    args = p.parse_args(argv)
    records = build()
    check(records)
    text = render_jsonl(records)
    criteria = (ROOT / "assets" / "demo" / "criteria.json").read_text(encoding="utf-8")
    target = OUT / "support_traces.jsonl"
    if args.stats:
        print(json.dumps(stats(records), indent=2))
    if args.check:
        ok = (
            target.is_file()
            and target.read_text(encoding="utf-8") == text
            and (OUT / "criteria.json").read_text(encoding="utf-8") == criteria
        )
        print("up to date" if ok else f"{target} differs from the generator's output")
        return 0 if ok else 1
    OUT.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    (OUT / "criteria.json").write_text(criteria, encoding="utf-8")
    print(f"wrote {len(records)} traces to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
