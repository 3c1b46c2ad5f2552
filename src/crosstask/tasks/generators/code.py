"""code: a Magicoder-like family. Write a small Python function from a one-sentence description.

An item names the function and its parameters ("Write a Python function `sum_evens(nums)` that returns
the sum of the even numbers in the list `nums`.") and its target is a short correct function. It is
scored by running hidden unit tests (the example's ``answer``: ``assert`` lines) on the generated code
in the sandbox of :mod:`crosstask.sandbox`, so any correct solution counts, not only the reference.

There are 44 kinds of function (list filters, arithmetic, counting, strings, dictionaries, ...), each
with several names, parameter names and constants, and type hints on some signatures. The input
determines the target, so the pipeline, which keeps train and eval items apart by input, never puts one
reference solution in both. The expected values of the hidden tests come from running the reference
solution, our own template code, in this process.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ..base import CHECKERS, EXTRACTORS, Example, TaskSpec
from ..registry import register_generator
from .text import Options

# ---------------------------------------------------------------------------------------------------
# Scoring: extract the code from a generation, run the hidden tests on it.

_CODE_START = re.compile(r"[ \t]*(?:async\s+def|def|class|import|from\s+[\w.]+\s+import)\b")
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S)


def extract_python_function(text: str) -> str:
    """The code in a generation: inside its first code fence if it has one, from the first ``def`` (or
    import) line up to the first line that is not code (not indented, and not a ``def``, ``class``,
    import, decorator or comment). Without a ``def`` or import, the stripped text."""
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return text.strip()
    code = [lines[start].lstrip()]  # " def f():" after the trigger's space
    for line in lines[start + 1 :]:
        if line.strip() and not line[0].isspace() and not _CODE_START.match(line) and line[0] not in "@#":
            break  # chatter or a call such as print(f(3)) after the function
        code.append(line)
    return "\n".join(code).rstrip()


def passes_unit_tests(prediction: str, example: Example) -> bool:
    """The extracted code passes the example's hidden tests (its ``answer``) in the sandbox."""
    from ...sandbox import run_tests  # imported here: the sandbox is only needed when code is scored

    return run_tests(prediction, example.answer).passed


EXTRACTORS["python_function"] = extract_python_function
CHECKERS["unit_tests"] = passes_unit_tests

# While generating: the answer ends at the first line after a ``def`` that is not code (chatter, a
# call, a closing fence). Blank lines do not end it, since they may separate parts of a function.
CODE_ANSWER_END = r"(?s)\bdef .*?\n(?=[^\s@#])(?!(?:async\s+def|def|class|import|from)\b)"


# ---------------------------------------------------------------------------------------------------
# Values for hidden tests

WORDS = ("apple", "banana", "cherry", "dog", "river", "stone", "python", "moon", "sun", "tree", "code", "data",
         "green", "blue", "house", "music", "table", "window", "garden", "paper", "orange", "tiger", "zebra",
         "lemon", "piano", "rocket", "ice", "umbrella", "eagle", "night", "jungle", "king", "violin", "yellow",
         "hat", "queen", "bread", "cloud", "fox", "water")
PALINDROMES = ("level", "radar", "kayak", "noon", "racecar", "civic", "refer", "madam", "rotor", "stats", "abba",
               "deed", "wow", "a", "")
PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97)


def _ints(rng: random.Random, low: int = -20, high: int = 20, min_len: int = 0, max_len: int = 8) -> list[int]:
    return [rng.randint(low, high) for _ in range(rng.randint(min_len, max_len))]


def _words(rng: random.Random, min_len: int = 0, max_len: int = 6) -> list[str]:
    return [rng.choice(WORDS) for _ in range(rng.randint(min_len, max_len))]


def _sentence(rng: random.Random, min_words: int = 0, max_words: int = 6, mixed_case: bool = False) -> str:
    text = " ".join(_words(rng, min_words, max_words))
    if mixed_case:
        text = "".join(c.upper() if rng.random() < 0.3 else c for c in text)
    return text


def _scores(rng: random.Random, min_len: int = 0, distinct_values: bool = False) -> dict[str, int]:
    keys = rng.sample(WORDS, rng.randint(min_len, 5))
    values = rng.sample(range(1, 60), len(keys)) if distinct_values else [rng.randint(0, 9) for _ in keys]
    return dict(zip(keys, values))


# ---------------------------------------------------------------------------------------------------
# Kinds of function. Each maker draws a function's name, parameter names and constants from ``rng``.
# Loop variables (x, c, w, k, v, a, b, i) never clash with parameter names.

LIST_NAMES = ("numbers", "nums", "values", "arr", "lst", "data", "items", "seq")
TEXT_NAMES = ("s", "text", "string", "phrase", "sentence", "line")
WORD_LIST_NAMES = ("words", "strings", "names", "tokens", "labels")
INT_NAMES = ("n", "num", "number", "value", "m")
DICT_NAMES = ("d", "scores", "counts", "mapping", "table", "prices")
PAIR_NAMES = (("a", "b"), ("x", "y"), ("m", "n"), ("p", "q"), ("first", "second"), ("left", "right"))


@dataclass(frozen=True)
class _Function:
    name: str
    params: tuple[tuple[str, str], ...]  # (name, type hint)
    returns: str  # type hint of the result
    task: str  # what it does, continuing "Write a Python function `f(x)` that ..."
    body: tuple[str, ...]  # lines of the body, nested lines indented by four spaces
    make_args: Callable[[random.Random], tuple]  # the arguments of one hidden test


def _sum_parity(rng):
    parity, xs = rng.choice(("even", "odd")), rng.choice(LIST_NAMES)
    return _Function(rng.choice((f"sum_of_{parity}s", f"sum_{parity}s", f"{parity}_sum", f"add_{parity}s")),
                     ((xs, "list[int]"),), "int", f"returns the sum of the {parity} numbers in the list `{xs}`",
                     (f"return sum(x for x in {xs} if x % 2 == {int(parity == 'odd')})",), lambda r: (_ints(r),))


def _count_compared(rng):
    op, words, names = rng.choice(((">", "greater than", ("count_above", "count_greater", "count_over")),
                                   ("<", "less than", ("count_below", "count_less", "count_under"))))
    xs, k = rng.choice(LIST_NAMES), rng.randint(-5, 20)
    return _Function(rng.choice(names), ((xs, "list[int]"),), "int",
                     f"returns how many numbers in the list `{xs}` are {words} {k}",
                     (f"return sum(1 for x in {xs} if x {op} {k})",), lambda r: (_ints(r, k - 10, k + 10),))


def _keep_multiples(rng):
    d, xs = rng.randint(2, 9), rng.choice(LIST_NAMES)
    return _Function(rng.choice((f"multiples_of_{d}", f"divisible_by_{d}", "keep_multiples", "filter_multiples")),
                     ((xs, "list[int]"),), "list[int]",
                     f"returns a list of the numbers in `{xs}` that are divisible by {d}, in their original order",
                     (f"return [x for x in {xs} if x % {d} == 0]",), lambda r: (_ints(r, -30, 30),))


def _scale(rng):
    k, xs = rng.randint(2, 10), rng.choice(LIST_NAMES)
    return _Function(rng.choice(("scale", "multiply_each", "scale_list", f"times_{k}")), ((xs, "list[int]"),),
                     "list[int]", f"returns a new list with every number in `{xs}` multiplied by {k}",
                     (f"return [x * {k} for x in {xs}]",), lambda r: (_ints(r),))


def _shift(rng):
    k, xs = rng.randint(1, 25), rng.choice(LIST_NAMES)
    return _Function(rng.choice(("add_to_all", "shift", "shift_values", "increase_all", f"add_{k}")),
                     ((xs, "list[int]"),), "list[int]", f"returns a new list with {k} added to every number in `{xs}`",
                     (f"return [x + {k} for x in {xs}]",), lambda r: (_ints(r),))


def _extreme(rng):
    which, function, names = rng.choice((("largest", "max", ("find_max", "largest", "max_value", "biggest")),
                                         ("smallest", "min", ("find_min", "smallest", "min_value", "lowest"))))
    xs = rng.choice(LIST_NAMES)
    return _Function(rng.choice(names), ((xs, "list[int]"),), "int",
                     f"returns the {which} number in the non-empty list `{xs}`", (f"return {function}({xs})",),
                     lambda r: (_ints(r, -50, 50, 1),))


def _spread(rng):
    xs = rng.choice(LIST_NAMES)
    return _Function(rng.choice(("value_range", "spread", "max_minus_min", "span")), ((xs, "list[int]"),), "int",
                     f"returns the difference between the largest and the smallest number in the non-empty list "
                     f"`{xs}`", (f"return max({xs}) - min({xs})",), lambda r: (_ints(r, -50, 50, 1),))


def _average(rng):
    xs = rng.choice(LIST_NAMES)
    return _Function(rng.choice(("average", "mean", "avg", "mean_value")), ((xs, "list[int]"),), "float",
                     f"returns the average (arithmetic mean) of the numbers in the non-empty list `{xs}`",
                     (f"return sum({xs}) / len({xs})",), lambda r: (_ints(r, 0, 20, 1),))


def _reverse_text(rng):
    s = rng.choice(TEXT_NAMES)
    return _Function(rng.choice(("reverse", "reverse_string", "reversed_text", "backwards")), ((s, "str"),), "str",
                     f"returns the string `{s}` reversed", (f"return {s}[::-1]",), lambda r: (_sentence(r, 0, 3),))


def _count_vowels(rng):
    s = rng.choice(TEXT_NAMES)
    if rng.random() < 0.5:
        return _Function(rng.choice(("count_vowels", "vowel_count", "num_vowels")), ((s, "str"),), "int",
                         f"returns the number of vowels (a, e, i, o, u, in upper or lower case) in the string `{s}`",
                         (f'return sum(1 for c in {s}.lower() if c in "aeiou")',),
                         lambda r: (_sentence(r, mixed_case=True),))
    return _Function(rng.choice(("count_consonants", "consonant_count", "num_consonants")), ((s, "str"),), "int",
                     f"returns the number of consonants (letters other than a, e, i, o, u, in upper or lower case) "
                     f"in the string `{s}`",
                     (f'return sum(1 for c in {s}.lower() if c.isalpha() and c not in "aeiou")',),
                     lambda r: (_sentence(r, mixed_case=True),))


def _count_letter(rng):
    letter, s = rng.choice("abcdeilmnoprst"), rng.choice(TEXT_NAMES)
    return _Function(rng.choice((f"count_{letter}", "count_letter", "letter_count", "occurrences")), ((s, "str"),),
                     "int", f"returns how many times the lowercase letter '{letter}' appears in the string `{s}`",
                     (f'return {s}.count("{letter}")',), lambda r: (_sentence(r),))


def _is_palindrome(rng):
    s = rng.choice(TEXT_NAMES)
    return _Function(rng.choice(("is_palindrome", "palindrome", "check_palindrome", "reads_same_backwards")),
                     ((s, "str"),), "bool",
                     f"returns True if the string `{s}` reads the same forwards and backwards, and False otherwise",
                     (f"return {s} == {s}[::-1]",),
                     lambda r: (r.choice(PALINDROMES) if r.random() < 0.5 else r.choice(WORDS),))


def _capitalize_words(rng):
    s = rng.choice(TEXT_NAMES)
    return _Function(rng.choice(("capitalize_words", "title_case", "capitalize_each", "to_title")), ((s, "str"),),
                     "str", f"returns the string `{s}` with the first letter of every word in upper case and the "
                     "other letters in lower case (words are separated by single spaces)",
                     (f'return " ".join(w.capitalize() for w in {s}.split(" "))',),
                     lambda r: (_sentence(r, mixed_case=True),))


def _word_count(rng):
    s = rng.choice(TEXT_NAMES)
    return _Function(rng.choice(("word_count", "count_words", "num_words", "how_many_words")), ((s, "str"),), "int",
                     f"returns the number of words in the string `{s}`, where words are separated by whitespace",
                     (f"return len({s}.split())",), lambda r: (_sentence(r).replace(" ", r.choice((" ", "  "))),))


def _longest_word(rng):
    which, function, names = rng.choice((("longest", "max", ("longest_word", "find_longest", "longest")),
                                         ("shortest", "min", ("shortest_word", "find_shortest", "shortest"))))
    words = rng.choice(WORD_LIST_NAMES)
    return _Function(rng.choice(names), ((words, "list[str]"),), "str",
                     f"returns the {which} string in the non-empty list `{words}` (the first of them if several "
                     "are equally long)", (f"return {function}({words}, key=len)",), lambda r: (_words(r, 1),))


def _dedupe(rng):
    xs = rng.choice(LIST_NAMES)
    return _Function(rng.choice(("remove_duplicates", "dedupe", "unique", "unique_values", "drop_duplicates")),
                     ((xs, "list[int]"),), "list[int]", f"returns the numbers of `{xs}` without duplicates, keeping "
                     "the first occurrence of each, in their original order",
                     (f"return list(dict.fromkeys({xs}))",), lambda r: (_ints(r, 0, 6, 0, 9),))


def _powers(rng):
    power, noun, names = rng.choice(((2, "square", ("squares", "square_all", "square_each", "squared")),
                                     (3, "cube", ("cubes", "cube_all", "cube_each", "cubed"))))
    xs = rng.choice(LIST_NAMES)
    return _Function(rng.choice(names), ((xs, "list[int]"),), "list[int]",
                     f"returns a new list with the {noun} of every number in `{xs}`",
                     (f"return [x ** {power} for x in {xs}]",), lambda r: (_ints(r, -9, 9),))


def _factorial(rng):
    n = rng.choice(INT_NAMES)
    return _Function(rng.choice(("factorial", "fact", "factorial_of", "compute_factorial")), ((n, "int"),), "int",
                     f"returns the factorial of the non-negative integer `{n}`",
                     ("result = 1", f"for i in range(2, {n} + 1):", "    result *= i", "return result"),
                     lambda r: (r.randint(0, 12),))


def _fibonacci(rng):
    n = rng.choice(INT_NAMES)
    return _Function(rng.choice(("fibonacci", "fib", "nth_fibonacci", "fibonacci_number")), ((n, "int"),), "int",
                     f"returns the Fibonacci number at position `{n}`, where position 0 holds 0 and position 1 holds 1",
                     ("a, b = 0, 1", f"for _ in range({n}):", "    a, b = b, a + b", "return a"),
                     lambda r: (r.randint(0, 25),))


def _is_prime(rng):
    n = rng.choice(INT_NAMES)
    return _Function(rng.choice(("is_prime", "prime", "check_prime", "is_prime_number")), ((n, "int"),), "bool",
                     f"returns True if the integer `{n}` is a prime number and False otherwise",
                     (f"if {n} < 2:", "    return False", f"for i in range(2, int({n} ** 0.5) + 1):",
                      f"    if {n} % i == 0:", "        return False", "return True"),
                     lambda r: (r.choice(PRIMES) if r.random() < 0.5 else r.randint(0, 100),))


def _digit_sum(rng):
    n = rng.choice(INT_NAMES)
    return _Function(rng.choice(("digit_sum", "sum_of_digits", "sum_digits", "add_digits")), ((n, "int"),), "int",
                     f"returns the sum of the decimal digits of the non-negative integer `{n}`",
                     (f"return sum(int(c) for c in str({n}))",), lambda r: (r.randint(0, 10 ** r.randint(1, 6)),))


def _gcd(rng):
    a, b = rng.choice(PAIR_NAMES)
    return _Function(rng.choice(("gcd", "greatest_common_divisor", "find_gcd", "common_divisor")),
                     ((a, "int"), (b, "int")), "int",
                     f"returns the greatest common divisor of the positive integers `{a}` and `{b}`",
                     (f"while {b}:", f"    {a}, {b} = {b}, {a} % {b}", f"return {a}"),
                     _multiples_pair)


def _multiples_pair(rng: random.Random) -> tuple[int, int]:
    factor = rng.randint(1, 9)  # a shared factor, so that the answer is often more than 1
    return factor * rng.randint(1, 12), factor * rng.randint(1, 12)


def _temperature(rng):
    if rng.random() < 0.5:
        c = rng.choice(("celsius", "c", "degrees", "temp"))
        return _Function(rng.choice(("celsius_to_fahrenheit", "c_to_f", "to_fahrenheit")), ((c, "float"),), "float",
                         f"returns the temperature `{c}`, given in degrees Celsius, in degrees Fahrenheit",
                         (f"return {c} * 9 / 5 + 32",), lambda r: (r.randint(-40, 110),))
    f = rng.choice(("fahrenheit", "f", "degrees", "temp"))
    return _Function(rng.choice(("fahrenheit_to_celsius", "f_to_c", "to_celsius")), ((f, "float"),), "float",
                     f"returns the temperature `{f}`, given in degrees Fahrenheit, in degrees Celsius",
                     (f"return ({f} - 32) * 5 / 9",), lambda r: (r.randint(-40, 220),))


def _clamp(rng):
    low = rng.randint(-10, 10)
    high, x = low + rng.randint(5, 30), rng.choice(INT_NAMES)
    return _Function(rng.choice(("clamp", "limit", "bound", "clip")), ((x, "int"),), "int",
                     f"returns `{x}` if it lies between {low} and {high}, {low} if it is smaller and {high} if it is "
                     "larger", (f"return max({low}, min({high}, {x}))",), lambda r: (r.randint(low - 20, high + 20),))


def _count_starting_with(rng):
    letter, words = rng.choice(sorted({word[0] for word in WORDS if word})), rng.choice(WORD_LIST_NAMES)
    return _Function(rng.choice(("count_starting_with", f"count_{letter}_words", "starts_with_count")),
                     ((words, "list[str]"),), "int",
                     f"returns how many strings in the list `{words}` start with the lowercase letter '{letter}'",
                     (f'return sum(1 for w in {words} if w.startswith("{letter}"))',),
                     lambda r: (_words(r, 0, 8) + [w for w in WORDS if w[0] == letter][: r.randint(0, 2)],))


def _invert_dict(rng):
    d = rng.choice(DICT_NAMES)
    return _Function(rng.choice(("invert", "invert_dict", "swap_keys_values", "reverse_mapping")),
                     ((d, "dict[str, int]"),), "dict[int, str]",
                     f"returns a new dictionary that maps each value of the dictionary `{d}` to its key (the values "
                     "are all different)", (f"return {{v: k for k, v in {d}.items()}}",),
                     lambda r: (_scores(r, distinct_values=True),))


def _key_of_max(rng):
    d = rng.choice(DICT_NAMES)
    return _Function(rng.choice(("key_of_max", "best_key", "top_key", "max_key")), ((d, "dict[str, int]"),), "str",
                     f"returns the key of the non-empty dictionary `{d}` with the largest value (the first such key if "
                     "several share it)", (f"return max({d}, key={d}.get)",), lambda r: (_scores(r, 1),))


def _sum_values(rng):
    d = rng.choice(DICT_NAMES)
    return _Function(rng.choice(("sum_values", "total", "total_value", "sum_of_values")), ((d, "dict[str, int]"),),
                     "int", f"returns the sum of the values of the dictionary `{d}`", (f"return sum({d}.values())",),
                     lambda r: (_scores(r),))


def _char_frequency(rng):
    s = rng.choice(TEXT_NAMES)
    return _Function(rng.choice(("char_frequency", "count_chars", "letter_counts", "char_counts")), ((s, "str"),),
                     "dict[str, int]", f"returns a dictionary that maps each character of the string `{s}` to the "
                     "number of times it occurs, in the order of first appearance",
                     ("counts = {}", f"for c in {s}:", "    counts[c] = counts.get(c, 0) + 1", "return counts"),
                     lambda r: (r.choice(WORDS) if r.random() < 0.7 else _sentence(r, 0, 2),))


def _second_largest(rng):
    xs = rng.choice(LIST_NAMES)
    return _Function(rng.choice(("second_largest", "runner_up", "second_max", "second_biggest")),
                     ((xs, "list[int]"),), "int", f"returns the second largest distinct number in the list `{xs}`, "
                     "which holds at least two different numbers", (f"return sorted(set({xs}))[-2]",),
                     lambda r: (_two_different_or_more(r),))


def _two_different_or_more(rng: random.Random) -> list[int]:
    values = [rng.randint(-9, 9), rng.randint(10, 20)] + _ints(rng, -20, 20, 0, 5)
    rng.shuffle(values)
    return values


def _keep_sign(rng):
    sign, op, names = rng.choice((("positive", ">", ("positives", "keep_positive", "only_positive")),
                                  ("negative", "<", ("negatives", "keep_negative", "only_negative"))))
    xs = rng.choice(LIST_NAMES)
    return _Function(rng.choice(names), ((xs, "list[int]"),), "list[int]",
                     f"returns a list of the {sign} numbers in `{xs}` (zero is neither), in their original order",
                     (f"return [x for x in {xs} if x {op} 0]",), lambda r: (_ints(r),))


def _join_words(rng):
    separator, words = rng.choice((", ", "-", " ", "_", "; ", " | ", "/")), rng.choice(WORD_LIST_NAMES)
    return _Function(rng.choice(("join_words", "join_with", "combine", "glue")), ((words, "list[str]"),), "str",
                     f"returns one string made of the strings in the list `{words}`, with {separator!r} between "
                     "each two of them", (f"return {separator!r}.join({words})",), lambda r: (_words(r),))


def _is_sorted(rng):
    xs = rng.choice(LIST_NAMES)
    return _Function(rng.choice(("is_sorted", "in_order", "is_non_decreasing", "check_sorted")), ((xs, "list[int]"),),
                     "bool", f"returns True if the numbers in the list `{xs}` are in non-decreasing order and False "
                     "otherwise", (f"return all(a <= b for a, b in zip({xs}, {xs}[1:]))",),
                     lambda r: (sorted(_ints(r, 0, 9, 2)) if r.random() < 0.5 else _ints(r, 0, 9, 2),))


def _product(rng):
    xs = rng.choice(LIST_NAMES)
    return _Function(rng.choice(("product", "product_of", "prod", "multiply_together")), ((xs, "list[int]"),), "int",
                     f"returns the product of the numbers in the list `{xs}` (1 for an empty list)",
                     ("result = 1", f"for x in {xs}:", "    result *= x", "return result"),
                     lambda r: (_ints(r, -5, 9, 0, 6),))


def _running_total(rng):
    xs = rng.choice(LIST_NAMES)
    return _Function(rng.choice(("running_total", "cumulative_sum", "prefix_sums", "running_sum")),
                     ((xs, "list[int]"),), "list[int]", f"returns the running totals of the list `{xs}`: a list whose "
                     "item i is the sum of the first i + 1 numbers",
                     ("totals = []", "total = 0", f"for x in {xs}:", "    total += x", "    totals.append(total)",
                      "return totals"), lambda r: (_ints(r),))


def _count_case(rng):
    case, method, names = rng.choice((("upper", "isupper", ("count_upper", "uppercase_count", "num_capitals")),
                                      ("lower", "islower", ("count_lower", "lowercase_count", "num_lowercase"))))
    s = rng.choice(TEXT_NAMES)
    return _Function(rng.choice(names), ((s, "str"),), "int",
                     f"returns the number of {case}-case letters in the string `{s}`",
                     (f"return sum(1 for c in {s} if c.{method}())",), lambda r: (_sentence(r, mixed_case=True),))


def _remove_vowels(rng):
    s = rng.choice(TEXT_NAMES)
    return _Function(rng.choice(("remove_vowels", "strip_vowels", "without_vowels", "drop_vowels")), ((s, "str"),),
                     "str", f"returns the string `{s}` without its vowels (a, e, i, o, u, in upper or lower case)",
                     (f'return "".join(c for c in {s} if c.lower() not in "aeiou")',),
                     lambda r: (_sentence(r, mixed_case=True),))


def _ends_of_list(rng):
    k, xs = rng.randint(1, 4), rng.choice(LIST_NAMES)
    end, slice_, names = rng.choice((("first", f"[:{k}]", (f"first_{k}", "take_first", "head")),
                                     ("last", f"[-{k}:]", (f"last_{k}", "take_last", "tail"))))
    return _Function(rng.choice(names), ((xs, "list[int]"),), "list[int]",
                     f"returns a list of the {end} {k} items of `{xs}` (all of them if there are fewer)",
                     (f"return {xs}{slice_}",), lambda r: (_ints(r, -9, 9, 0, 7),))


def _is_multiple(rng):
    d, n = rng.randint(2, 9), rng.choice(INT_NAMES)
    return _Function(rng.choice((f"is_multiple_of_{d}", f"divisible_by_{d}", "is_divisible", "check_divisible")),
                     ((n, "int"),), "bool",
                     f"returns True if the integer `{n}` is divisible by {d} and False otherwise",
                     (f"return {n} % {d} == 0",),
                     lambda r: (d * r.randint(-20, 20) if r.random() < 0.5 else r.randint(-100, 100),))


def _abs_difference(rng):
    a, b = rng.choice(PAIR_NAMES)
    return _Function(rng.choice(("abs_difference", "distance", "absolute_difference", "gap")),
                     ((a, "int"), (b, "int")), "int",
                     f"returns the absolute difference between the integers `{a}` and `{b}`",
                     (f"return abs({a} - {b})",), lambda r: (r.randint(-50, 50), r.randint(-50, 50)))


def _first_above(rng):
    k, xs = rng.randint(0, 20), rng.choice(LIST_NAMES)
    return _Function(rng.choice(("first_above", "first_greater", "find_first_above", "first_over")),
                     ((xs, "list[int]"),), "int | None",
                     f"returns the first number in the list `{xs}` that is greater than {k}, or None if there is none",
                     (f"for x in {xs}:", f"    if x > {k}:", "        return x", "return None"),
                     lambda r: (_ints(r, k - 15, k + 8),))


def _count_value(rng):
    xs, target = rng.choice(LIST_NAMES), rng.choice(("target", "value", "item", "wanted"))
    return _Function(rng.choice(("count_occurrences", "count_value", "occurrences", "how_many")),
                     ((xs, "list[int]"), (target, "int")), "int",
                     f"returns how many times `{target}` occurs in the list `{xs}`", (f"return {xs}.count({target})",),
                     lambda r: (_ints(r, 0, 4, 0, 9), r.randint(0, 4)))


def _string_lengths(rng):
    words = rng.choice(WORD_LIST_NAMES)
    return _Function(rng.choice(("lengths", "string_lengths", "word_lengths", "lens")), ((words, "list[str]"),),
                     "list[int]", f"returns a list with the length of each string in `{words}`",
                     (f"return [len(w) for w in {words}]",), lambda r: (_words(r),))


def _sum_of_squares(rng):
    xs = rng.choice(LIST_NAMES)
    return _Function(rng.choice(("sum_of_squares", "square_sum", "sum_squares")), ((xs, "list[int]"),), "int",
                     f"returns the sum of the squares of the numbers in the list `{xs}`",
                     (f"return sum(x * x for x in {xs})",), lambda r: (_ints(r, -9, 9),))


KINDS: tuple[Callable[[random.Random], _Function], ...] = (
    _sum_parity, _count_compared, _keep_multiples, _scale, _shift, _extreme, _spread, _average, _reverse_text,
    _count_vowels, _count_letter, _is_palindrome, _capitalize_words, _word_count, _longest_word, _dedupe, _powers,
    _factorial, _fibonacci, _is_prime, _digit_sum, _gcd, _temperature, _clamp, _count_starting_with, _invert_dict,
    _key_of_max, _sum_values, _char_frequency, _second_largest, _keep_sign, _join_words, _is_sorted, _product,
    _running_total, _count_case, _remove_vowels, _ends_of_list, _is_multiple, _abs_difference, _first_above,
    _count_value, _string_lengths, _sum_of_squares,
)


# ---------------------------------------------------------------------------------------------------
# The family


class CodeOptions(Options):

    solution_style: Literal["compact", "documented"] = Field(
        "compact", description="documented: the reference solution opens with a docstring (longer outputs)")
    type_hints: float = Field(0.5, ge=0.0, le=1.0, description="share of signatures written with type hints")
    hidden_tests: int = Field(4, ge=1, le=10, description="asserts per item (at least two different answers)")


def _render(function: _Function, hints: bool, documented: bool) -> tuple[str, str]:
    """(signature, reference solution)."""
    if hints:
        params = ", ".join(f"{name}: {hint}" for name, hint in function.params)
        signature = f"{function.name}({params}) -> {function.returns}"
    else:
        signature = f"{function.name}({', '.join(name for name, _ in function.params)})"
    lines = [f"def {signature}:"]
    if documented:  # "returns the sum of `xs`" -> "Return the sum of xs."
        verb, rest = function.task.split(" ", 1)
        lines.append(f'    """{verb[:-1].capitalize()} {rest.replace("`", "")}."""')
    lines += [f"    {line}" for line in function.body]
    return signature, "\n".join(lines)


def _hidden_tests(rng: random.Random, function: _Function, solution: str, count: int) -> str:
    """``count`` asserts with distinct calls and at least two different answers (when the function has them),
    so that a constant answer fails. Expected values come from running the reference solution."""
    namespace: dict = {}
    exec(solution, namespace)  # noqa: S102 (our own template code, not a model's)
    reference = namespace[function.name]
    lines: list[str] = []
    answers: set[str] = set()
    for _ in range(30 * count):
        args = function.make_args(rng)
        call = f"{function.name}({', '.join(repr(arg) for arg in args)})"
        expected = repr(reference(*copy.deepcopy(args)))
        if any(line.startswith(f"assert {call} ==") for line in lines):
            continue
        if len(lines) == count - 1 and answers == {expected} and count > 1:
            continue  # keep the last slot for a different answer
        lines.append(f"assert {call} == {expected}")
        answers.add(expected)
        if len(lines) == count:
            break
    return "\n".join(lines)


@register_generator(
    TaskSpec(
        name="code",
        instruction="Write the Python function described below. Answer with the code only.",
        trigger="Code",
        answer_type="generate",
        extractor="python_function",
        checker="unit_tests",
        max_new_tokens=96,  # the longest reference is 60 SmolLM tokens (documented: 76)
        stop=(),  # blank lines may separate parts of a function; CODE_ANSWER_END ends the answer
        answer_end=CODE_ANSWER_END,
        description="Magicoder-like: write a small Python function from a description; scored by hidden unit tests "
                    "run in a sandbox.",
    ),
    CodeOptions,
)
def code(rng: random.Random, options: CodeOptions) -> Example:
    function = rng.choice(KINDS)(rng)
    signature, solution = _render(function, rng.random() < options.type_hints, options.solution_style == "documented")
    tests = _hidden_tests(rng, function, _render(function, False, False)[1], options.hidden_tests)
    return Example(input=f"Write a Python function `{signature}` that {function.task}.", target=solution, answer=tests)
