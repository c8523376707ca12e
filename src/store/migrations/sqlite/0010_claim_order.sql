-- A claim takes an invoker's due invocations in (next_at, id) order, up to a limit. Ending at
-- next_at, the index left the rows of each millisecond to be sorted by id; ending at id, it hands
-- them over in the claim's order.
DROP INDEX invocations_due;
CREATE INDEX invocations_due ON invocations (invoker, state, next_at, id);
