"""Several GEPA proposals in flight at once, on gepa 0.1.4's own extension points.

gepa's loop proposes one candidate per iteration: evaluate the parent on a minibatch of 3,
reflect, evaluate the child on the same 3, validate it. With 8 judge workers that fills 3
slots, and most of the run is spent waiting on one call chain. gepa 0.1.4 can work on
several (parent, minibatch) tasks per iteration (its ``sampling_strategy``): it evaluates
every task's parent minibatch in one batched call (our adapter's ``batch_evaluate``, one
parallel round), reflects on all of them in one ``reflect_many`` (our reflection LM's
``batch_complete`` sends those calls concurrently), evaluates every child in one batched
call and validates the ones its ``selection_strategy`` keeps in one more. So an
iteration with ``n`` tasks costs about as many dependent rounds as one with one task, and
the 8 slots fill up.

This module supplies the two strategies the runner passes to ``gepa.optimize`` when
``proposals_in_flight > 1``:

* :class:`BudgetedSampling`: ``n`` tasks per iteration, each from its own parent drawn
  by gepa's candidate selector (its Pareto sampling), fewer when the budget left cannot
  pay for ``n`` minibatch pairs and one validation (a run never overspends its budget by
  more than a minibatch, as in sequential mode);
* :class:`BudgetedSelection`: the proposals that pass gepa's acceptance check, best
  improvement first, at most ``keep`` (the runner keeps one, as gepa's
  ``BestImprovement``) and at most as many as the budget can validate; it also tells the run's :class:`ProposalLog` which proposals were
  kept and which were turned down, in the order gepa reports them, so each
  ``proposals.json`` entry gets its own outcome.

With ``proposals_in_flight == 1`` the runner passes neither and gepa's sequential loop
runs exactly as before.
"""

from __future__ import annotations

from typing import Any

from gepa.core.state import GEPAState
from gepa.proposer.base import CandidateProposal
from gepa.proposer.reflective_mutation.base import CandidateSelector
from gepa.strategies.acceptance import AcceptanceCriterion
from gepa.strategies.batch_sampler import BatchSampler
from gepa.strategies.proposal_sampling import ProposalTask

from core.optimization.gepa_adapter import OUTSCORED_IN_ITERATION, ProposalLog
from core.optimization.record import NOT_BETTER_ON_MINIBATCH


class _Budget:
    """What is left of the metric-call budget, and what one task and one validation cost."""

    def __init__(self, budget: int, minibatch: int, n_val: int) -> None:
        self.budget = int(budget)
        self.minibatch = max(int(minibatch), 1)
        self.n_val = max(int(n_val), 1)

    def left(self, state: GEPAState) -> int:
        # Up to one minibatch over the budget is tolerated, as BudgetStop allows.
        return self.budget + self.minibatch - int(state.total_num_evals)


class BudgetedSampling:
    """gepa ``SamplingStrategy``: ``n`` (parent, minibatch) tasks per iteration.

    Each task draws its parent with gepa's candidate selector and its minibatch with
    gepa's batch sampler (as gepa's ``IndependentSampling``). Fewer tasks when the budget
    left cannot pay for every task's two minibatch evaluations plus one validation; at
    least one, so the loop always moves (gepa and the budget stop end it).
    """

    def __init__(self, n: int, budget: int, minibatch: int, n_val: int) -> None:
        """Create the strategy.

        Args:
            n: Tasks per iteration at most.
            budget: The run's metric-call budget.
            minibatch: Examples per minibatch.
            n_val: Validation examples (one validation costs that many calls).
        """
        self.n = max(int(n), 1)
        self._budget = _Budget(budget, minibatch, n_val)

    def tasks_for(self, state: GEPAState) -> int:
        """How many tasks the budget left pays for (at least 1, at most ``n``)."""
        b = self._budget
        affordable = (b.left(state) - b.n_val) // (2 * b.minibatch)
        return max(1, min(self.n, affordable))

    def sample_tasks(
        self,
        state: GEPAState,
        candidate_selector: CandidateSelector,
        batch_sampler: BatchSampler[Any, Any],
        trainset: Any,
    ) -> list[ProposalTask[Any, Any]]:
        """The iteration's tasks (see the class docstring)."""
        tasks: list[ProposalTask[Any, Any]] = []
        for _ in range(self.tasks_for(state)):
            parent_idx = candidate_selector.select_candidate_idx(state)
            ids = batch_sampler.next_minibatch_ids(trainset, state)
            tasks.append(
                ProposalTask(
                    parent_idx, state.program_candidates[parent_idx], ids, trainset.fetch(ids)
                )
            )
        return tasks


def _gain(p: CandidateProposal) -> float:
    return sum(p.subsample_scores_after or []) - sum(p.subsample_scores_before or [])


class BudgetedSelection:
    """gepa ``SelectionStrategy``: the proposals that pass acceptance, best gain first,
    as many as the budget left can validate (at least one).

    It also hands the run's proposal log the order in which gepa will report the turned
    down proposals (``on_candidate_rejected``, in proposal order) and the kept ones
    (``on_candidate_accepted``, in selection order), so each logged proposal is resolved
    by its own text rather than "the iteration's pending one".
    """

    def __init__(
        self,
        budget: int,
        minibatch: int,
        n_val: int,
        log: ProposalLog | None = None,
        keep: int | None = None,
    ) -> None:
        """Create the strategy.

        Args:
            budget: The run's metric-call budget.
            minibatch: Examples per minibatch.
            n_val: Validation examples.
            log: The run's proposal log (told the outcome order), if any.
            keep: At most this many kept per iteration (None: as many as pass).
        """
        self._budget = _Budget(budget, minibatch, n_val)
        self.log = log
        self.keep = keep

    def select(
        self,
        proposals: list[CandidateProposal],
        state: GEPAState,
        acceptance_criterion: AcceptanceCriterion,
    ) -> list[CandidateProposal]:
        """The kept proposals (see the class docstring)."""
        passing = [p for p in proposals if acceptance_criterion.should_accept(p, state)]
        passing.sort(key=_gain, reverse=True)
        b = self._budget
        room = max(1, b.left(state) // b.n_val)
        if self.keep is not None:
            room = min(room, max(1, self.keep))
        # gepa validates identical children once: count distinct ones against the room.
        kept: list[CandidateProposal] = []
        seen: set[tuple[tuple[str, str], ...]] = set()
        for p in passing:
            key = tuple(sorted(p.candidate.items()))
            if key in seen:
                continue
            if len(kept) >= room:
                break
            seen.add(key)
            kept.append(p)
        if self.log is not None:
            kept_ids = {id(p) for p in kept}
            passed = {id(p) for p in passing}
            self.log.expect_outcomes(
                rejected=[
                    (
                        dict(p.candidate),
                        OUTSCORED_IN_ITERATION if id(p) in passed else NOT_BETTER_ON_MINIBATCH,
                    )
                    for p in proposals
                    if id(p) not in kept_ids
                ],
                accepted=[dict(p.candidate) for p in kept],
            )
        return kept
