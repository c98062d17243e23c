"""What a transcript's usage costs: a price table, and ccusage's three cost modes.

The table is the harness's own by default (the agent's price_per_mtok, which the
receipts' estimates use too), or a LiteLLM price file (the table ccusage prices
with: model_prices_and_context_window.json's input_cost_per_token,
output_cost_per_token, cache_read_input_token_cost, cache_creation_input_token_cost
and their *_above_200k_tokens rates). Costing follows ccusage 20.0.24
(ccusage-core cost.rs calculate_cost_for_usage_at):

- display: the line's costUSD, else 0;
- calculate: the tokens at the table's prices: a 1-hour cache write at twice the
  input rate, each kind's tokens past 200,000 in one response at its
  above-200k rate when the table has one; no model, <synthetic>, or a model the
  table lacks: 0 (the harness's table prices any model: by family, else the default);
- auto: costUSD when the line has it, else calculate.

Not modelled: ccusage's fast-mode multiplier (usage.speed "fast") and its
provider-prefixed and aliased model names in a LiteLLM file.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from harness import jsonio
from harness.agents import Agent, agent_for
from harness.report.transcripts import Entry

TIER_TOKENS = 200_000
HOUR_WRITE_FACTOR = 2.0  # a 1-hour cache write costs twice the input rate
LITELLM_FIELDS = ("input_cost_per_token", "output_cost_per_token", "cache_read_input_token_cost",
                  "cache_creation_input_token_cost")


class CostMode(Enum):
    AUTO = "auto"
    CALCULATE = "calculate"
    DISPLAY = "display"


@dataclass(frozen=True)
class Price:
    """USD per token: input, output, cache read, cache write (5 minutes); each with
    its rate past TIER_TOKENS, when there is one."""

    rates: tuple[float, float, float, float]
    above: tuple[float | None, float | None, float | None, float | None] = (None, None, None, None)


def _tiered(tokens: int, rate: float, above: float | None) -> float:
    if above is not None and tokens > TIER_TOKENS:
        return TIER_TOKENS * rate + (tokens - TIER_TOKENS) * above
    return tokens * rate


class PriceBook:
    """Prices by model name: from a LiteLLM file (exact name, else the longest name
    that begins it; else none), or the agent's own table."""

    def __init__(self, table: dict[str, Price] | None = None, agent: Agent | None = None, name: str = "harness") -> None:
        self.table = table
        self.agent = agent or agent_for()
        self.name = name
        self._memo: dict[str, Price | None] = {}

    @classmethod
    def litellm(cls, path: Path) -> PriceBook:
        """A LiteLLM price file; ValueError when it is not one."""
        try:
            data = jsonio.read_json(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read prices {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"prices {path}: not a JSON object of models")
        table: dict[str, Price] = {}
        for model, row in data.items():
            if isinstance(row, dict) and any(isinstance(row.get(f), (int, float)) for f in LITELLM_FIELDS):
                rates = tuple(float(row.get(f) or 0) for f in LITELLM_FIELDS)
                above = tuple(_float_or_none(row.get(f + "_above_200k_tokens")) for f in LITELLM_FIELDS)
                table[model] = Price(rates, above)  # type: ignore[arg-type]
        return cls(table, name=str(path))

    def _lookup(self, model: str) -> Price | None:
        if self.table is None:
            return Price(tuple(p / 1_000_000 for p in self.agent.price_per_mtok(model)))  # type: ignore[arg-type]
        name = model.split("[", 1)[0]
        if name in self.table:
            return self.table[name]
        best = max((k for k in self.table if name.startswith(k)), key=len, default="")
        return self.table[best] if best else None

    def price(self, model: str | None) -> Price | None:
        if model is None:
            return None
        if model not in self._memo:
            self._memo[model] = self._lookup(model)
        return self._memo[model]

    def calculate(self, e: Entry) -> float:
        p = self.price(e.model)
        if p is None:
            return 0.0
        (r_in, r_out, r_read, r_write), (a_in, a_out, a_read, a_write) = p.rates, p.above
        five = e.cache_write - e.cache_write_1h
        return (_tiered(e.input, r_in, a_in) + _tiered(e.output, r_out, a_out) + _tiered(five, r_write, a_write)
                + _tiered(e.cache_write_1h, r_in * HOUR_WRITE_FACTOR,
                          None if a_in is None else a_in * HOUR_WRITE_FACTOR)
                + _tiered(e.cache_read, r_read, a_read))

    def cost(self, e: Entry, mode: CostMode) -> float:
        if mode is CostMode.DISPLAY:
            return e.cost_usd or 0.0
        if mode is CostMode.AUTO and e.cost_usd is not None:
            return e.cost_usd
        return self.calculate(e)


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
