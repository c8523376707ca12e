-- A claim takes an invoker's due invocations in (next_at, id) order, up to a limit. With the
-- index ending at next_at, the rows of one millisecond still had to be sorted by id, and a planner
-- whose statistics lag (a table gone from empty to thousands pending within a minute) sorted
-- every pending row, each claim: 70-80 ms a claim with 14,000 pending. Ending at id, the index
-- hands them over in the claim's order, and the claim stops at its limit.
DROP INDEX invocations_due;
CREATE INDEX invocations_due ON invocations (invoker, state, next_at, id);
