-- Records: every resource as its JSON, keyed by (kind, user, id), with the
-- few columns queries need. ended = 0 marks a live record (or one that
-- never ends: applications, numbers); retention prunes the others.
CREATE TABLE records (
	kind    TEXT    NOT NULL,
	uid     TEXT    NOT NULL,
	id      TEXT    NOT NULL,
	parent  TEXT    NOT NULL DEFAULT '',
	state   TEXT    NOT NULL DEFAULT '',
	created INTEGER NOT NULL,
	ended   INTEGER NOT NULL DEFAULT 0,
	data    BLOB    NOT NULL,
	PRIMARY KEY (kind, uid, id)
) WITHOUT ROWID;
CREATE INDEX records_by_created ON records (kind, uid, created);
CREATE INDEX records_by_parent ON records (kind, parent, created) WHERE parent <> '';
CREATE INDEX records_by_ended ON records (ended);

-- The callback outbox: one row per event until it is delivered; failed
-- rows (given up after every retry and the fallback) stay for inspection
-- until retention.
CREATE TABLE outbox (
	seq     INTEGER PRIMARY KEY,
	uid     TEXT    NOT NULL,
	queue   TEXT    NOT NULL,
	type    TEXT    NOT NULL,
	route   BLOB    NOT NULL,
	body    BLOB    NOT NULL,
	failed  INTEGER NOT NULL DEFAULT 0,
	error   TEXT    NOT NULL DEFAULT '',
	created INTEGER NOT NULL,
	updated INTEGER NOT NULL
);
CREATE INDEX outbox_by_user ON outbox (uid, failed, seq);
CREATE INDEX outbox_by_updated ON outbox (updated);

-- meta holds counters that must survive the rows they count: the last
-- event sequence number given out (events without a callback are never
-- written, and delivered ones are deleted).
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
