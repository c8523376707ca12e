-- A node's subscriptions are found through (owner, id) alone. With (owner) beside it, the planner,
-- whose statistics lag a takeover that has just changed the owner of every row, judged both to
-- find one row and took the smaller: each page of a start's load then read and sorted every row
-- the node owned (1,000,000 owned: about 2 s a page of 10,000). (owner, id) serves every lookup by
-- owner, and one index fewer is one fewer entry for each Subscribe to write.
DROP INDEX subscriptions_owner;
