-- PostgreSQL twin of ../0007_autoincrement_ids.sql: nothing to do. Identity
-- columns (0001, 0002) never hand out an id twice; the number is kept so both
-- engines count migrations alike.
SELECT 1;
