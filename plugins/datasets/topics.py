"""``topic_sentences``: short sentences from a fixed grammar, labelled with the topic they were generated for.

Each sentence is one to a few clauses of a small grammar (determiners, pronouns,
auxiliaries, prepositions, adverbs, time words, conjunctions: the function
words every topic shares) whose content slots (noun, verb, adjective) are
filled for one of four topics: weather, sport, food, travel. Each topic owns 30
content words; a few more belong to two topics (``hot``: weather and food,
``race``: sport and travel), and now and then a content slot takes another
topic's word as a distractor. A sentence is kept only when its own topic's
words outnumber every other topic's (at least two of them), so the label, the
topic it was generated for, is known by construction and can be read off the
sentence.

Tokens come from a fixed word-level vocabulary built here: ``[PAD]`` = 0,
``[UNK]`` = 1, ``[CLS]`` = 2, then every word in sorted order. A sample is
``[CLS]`` and 6..20 word ids, padded with 0 to 32 tokens; its attention mask is
1 on the real tokens and 0 on the padding. The samples are a dict
``{"input_ids": int64 [N, 32], "attention_mask": int64 [N, 32]}`` that feeds a
card's two inputs by name.

Train and test never share a sentence: a sentence belongs to the test split
when a hash of its token ids falls in one bucket of four, to the train split
otherwise, whatever the seed; the splits also draw from different random
streams.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from zoocompat_plugins.datasets.params import check_params, check_seed, check_split, int_param

import zoocompat
from zoocompat.api import LabeledPool
from zoocompat.api.errors import CellError

TOPICS = ["weather", "sport", "food", "travel"]
SEQ_LEN = 32
MIN_WORDS, MAX_WORDS = 6, 20
PAD, UNK, CLS = "[PAD]", "[UNK]", "[CLS]"
SPECIAL = [PAD, UNK, CLS]

#: Each topic's own content words by part of speech (14 nouns, 8 verbs, 8 adjectives: 30 a topic).
TOPIC_WORDS: dict[str, dict[str, list[str]]] = {
    "weather": {
        "noun": "rain snow cloud thunder fog breeze drizzle hail frost sunshine umbrella temperature rainbow "
        "lightning".split(),
        "verb": "pour freeze drip melt shine blow thaw rumble".split(),
        "adj": "rainy sunny cloudy foggy windy humid stormy chilly".split(),
    },
    "sport": {
        "noun": "goal team coach referee stadium player match league tennis football basket trophy helmet "
        "medal".split(),
        "verb": "score kick tackle dribble defend shoot train sprint".split(),
        "adj": "athletic winning defensive offensive olympic undefeated fit sporty".split(),
    },
    "food": {
        "noun": "bread soup cheese pasta salad dessert kitchen recipe sauce butter garlic chef noodle pancake".split(),
        "verb": "bake fry cook chop stir roast eat boil".split(),
        "adj": "delicious spicy sweet salty crispy tasty savory creamy".split(),
    },
    "travel": {
        "noun": "airport passport luggage hotel taxi suitcase flight museum map tourist beach "
        "visa border cruise".split(),
        "verb": "fly pack book explore depart arrive sightsee hike".split(),
        "adj": "foreign scenic overseas international exotic remote touristy historic".split(),
    },
}

#: Content words two topics share: ``(word, part of speech, topics)``. They tell two topics from the other two
#: but not from each other, so the model must read the topic's own words too.
SHARED_WORDS: list[tuple[str, str, tuple[str, str]]] = [
    ("hot", "adj", ("weather", "food")),
    ("cold", "adj", ("weather", "food")),
    ("dry", "adj", ("weather", "food")),
    ("fresh", "adj", ("weather", "food")),
    ("race", "noun", ("sport", "travel")),
    ("trip", "noun", ("sport", "travel")),
    ("run", "verb", ("sport", "travel")),
    ("sky", "noun", ("weather", "travel")),
    ("season", "noun", ("weather", "sport")),
    ("heat", "noun", ("weather", "sport")),
    ("bowl", "noun", ("sport", "food")),
    ("serve", "verb", ("sport", "food")),
    ("cup", "noun", ("sport", "food")),
    ("menu", "noun", ("food", "travel")),
    ("market", "noun", ("food", "travel")),
    ("local", "adj", ("food", "travel")),
]

#: Function and filler words every topic uses, by grammar slot (40 words).
FUNCTION_WORDS: dict[str, list[str]] = {
    "det": "the a this that some every our their my".split(),
    "pron": "we they i she he".split(),
    "aux": "will can should did".split(),
    "be": "is was".split(),
    "prep": "in on at for with after before near".split(),
    "adv": "really quite very just always never".split(),
    "time": "today yesterday tomorrow again".split(),
    "conj": "and but so".split(),
}

#: Clause templates: slot names are parts of speech (content) or function-word groups.
CLAUSES: list[list[str]] = [
    ["det", "adj", "noun", "aux", "verb", "prep", "det", "noun"],
    ["pron", "aux", "adv", "verb", "det", "noun"],
    ["det", "noun", "be", "adv", "adj"],
    ["pron", "verb", "det", "adj", "noun", "time"],
    ["time", "pron", "verb", "prep", "det", "noun"],
    ["det", "noun", "be", "adj"],
    ["det", "adj", "noun", "be", "prep", "det", "noun"],
    ["pron", "aux", "verb", "time"],
]
CONTENT = ("noun", "verb", "adj")
#: Chances that a content slot takes a shared word of the topic, or another topic's word (a distractor).
P_SHARED, P_DISTRACTOR = 0.15, 0.08
#: A sentence is in the test split when the first byte of its hash is a multiple of this.
TEST_BUCKETS = 4
DEFAULT_COUNTS = {"train": 4096, "test": 512}
_STREAMS = {"train": 1, "test": 2}
#: Draws allowed per sample before giving up (a test draw lands in its split about one time in four).
_MAX_DRAWS = 1000


def _all_words() -> list[str]:
    words = {w for groups in TOPIC_WORDS.values() for group in groups.values() for w in group}
    words |= {w for w, _, _ in SHARED_WORDS}
    words |= {w for group in FUNCTION_WORDS.values() for w in group}
    return sorted(words)


#: The vocabulary: special tokens first, then every word sorted; a word's id is its position.
VOCAB: list[str] = SPECIAL + _all_words()
WORD_IDS: dict[str, int] = {word: index for index, word in enumerate(VOCAB)}
#: The topic each topic-specific word belongs to (shared and function words are not in it).
WORD_TOPIC: dict[str, int] = {
    word: TOPICS.index(topic) for topic, groups in TOPIC_WORDS.items() for group in groups.values() for word in group
}


def _check_vocabulary() -> None:
    """Every word belongs to one group: a topic's own words, the shared words or the function words."""
    groups = [w for groups in TOPIC_WORDS.values() for group in groups.values() for w in group]
    groups += [w for w, _, _ in SHARED_WORDS] + [w for group in FUNCTION_WORDS.values() for w in group]
    assert len(groups) == len(set(groups)), "a word is in two groups of the grammar"


_check_vocabulary()


def encode(words: list[str]) -> np.ndarray:
    """``[CLS]`` and the ids of ``words`` ([UNK] for a word not in the vocabulary), padded with 0 to 32."""
    ids = [WORD_IDS[CLS]] + [WORD_IDS.get(word, WORD_IDS[UNK]) for word in words]
    if len(ids) > SEQ_LEN:
        raise ValueError(f"{len(words)} words do not fit {SEQ_LEN} tokens with [CLS]")
    return np.asarray(ids + [WORD_IDS[PAD]] * (SEQ_LEN - len(ids)), np.int64)


def decode(ids: np.ndarray, mask: np.ndarray | None = None) -> list[str]:
    """The words of one sample (``[CLS]`` and padding left out)."""
    keep = np.ones(len(ids), bool) if mask is None else np.asarray(mask).astype(bool)
    return [VOCAB[int(i)] for i, k in zip(ids, keep, strict=True) if k and VOCAB[int(i)] not in SPECIAL]


def topic_counts(words: list[str]) -> np.ndarray:
    """How many of each topic's own words ``words`` holds (shared and function words count for none)."""
    counts = np.zeros(len(TOPICS), np.int64)
    for word in words:
        if word in WORD_TOPIC:
            counts[WORD_TOPIC[word]] += 1
    return counts


def split_of(ids: np.ndarray) -> str:
    """The split a padded token-id row belongs to, by a hash of its ids (the same whatever the seed)."""
    digest = hashlib.blake2b(np.ascontiguousarray(ids, dtype=np.int64).tobytes(), digest_size=8).digest()
    return "test" if digest[0] % TEST_BUCKETS == 0 else "train"


def _content_word(rng: np.random.Generator, topic: str, pos: str) -> str:
    """A content word for a ``pos`` slot of a ``topic`` sentence: its own, a shared one, or a distractor."""
    roll = rng.random()
    shared = [w for w, p, topics in SHARED_WORDS if p == pos and topic in topics]
    if roll < P_SHARED and shared:
        return shared[int(rng.integers(len(shared)))]
    if roll < P_SHARED + P_DISTRACTOR:
        others = [t for t in TOPICS if t != topic]
        topic = others[int(rng.integers(len(others)))]
    words = TOPIC_WORDS[topic][pos]
    return words[int(rng.integers(len(words)))]


def _clause(rng: np.random.Generator, topic: str) -> list[str]:
    template = CLAUSES[int(rng.integers(len(CLAUSES)))]
    words = []
    for slot in template:
        if slot in CONTENT:
            words.append(_content_word(rng, topic, slot))
        else:
            group = FUNCTION_WORDS[slot]
            words.append(group[int(rng.integers(len(group)))])
    return words


def sentence(rng: np.random.Generator, topic: str) -> list[str]:
    """One sentence of ``MIN_WORDS``..``MAX_WORDS`` words for ``topic`` whose own topic words (at least two)
    outnumber every other topic's.
    """
    label = TOPICS.index(topic)
    while True:
        target = int(rng.integers(MIN_WORDS, MAX_WORDS + 1))
        words = _clause(rng, topic)
        while len(words) < target:
            conj = FUNCTION_WORDS["conj"]
            words += [conj[int(rng.integers(len(conj)))], *_clause(rng, topic)]
        if len(words) > MAX_WORDS:
            continue
        counts = topic_counts(words)
        others = np.delete(counts, label)
        if counts[label] >= 2 and counts[label] > others.max():
            return words


class TopicSentencesDataset:
    """Grammar-generated sentences of four topics, tokenized with a fixed word-level vocabulary."""

    name = "topic_sentences"
    description = (
        "sentences of 6-20 words from a fixed grammar, each generated for one of 4 topics (weather, sport, food, "
        "travel; label by construction); samples {input_ids, attention_mask} int64 [N, 32] ([CLS] first, padded "
        "with 0); train/test disjoint by a hash of the ids; params: count (train 4096, test 512)"
    )

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """``count`` sentences of ``split``, deterministic for ``seed``; sentence ``i`` is of topic ``i % 4``,
        so the topics are balanced when ``count`` is a multiple of 4. No sentence repeats within a split.
        """
        check_split(self.name, split)
        check_params(self.name, params, ("count",))
        check_seed(self.name, seed)
        count = int_param(self.name, params, "count", DEFAULT_COUNTS[split], 1)
        rng = np.random.default_rng([seed, _STREAMS[split]])
        labels = np.arange(count, dtype=np.int64) % len(TOPICS)
        ids = np.zeros((count, SEQ_LEN), np.int64)
        seen: set[bytes] = set()
        for index, label in enumerate(labels):
            for _ in range(_MAX_DRAWS):
                row = encode(sentence(rng, TOPICS[label]))
                key = row.tobytes()
                if key not in seen and split_of(row) == split:
                    break
            else:
                raise CellError(
                    "bad_input",
                    f"dataset {self.name!r}: no new {split} sentence after {_MAX_DRAWS} draws at sample {index}; "
                    "lower dataset.params.count",
                )
            seen.add(key)
            ids[index] = row
        mask = (ids != WORD_IDS[PAD]).astype(np.int64)
        return LabeledPool({"input_ids": ids, "attention_mask": mask}, labels, list(TOPICS))


@zoocompat.hookimpl
def zoocompat_datasets() -> list[Any]:
    """The topic sentence dataset."""
    return [TopicSentencesDataset()]
