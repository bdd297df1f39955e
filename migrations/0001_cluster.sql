-- pwrotd cluster store, schema 1 (docs/cluster.md#schema). Passwords are never stored in
-- clear: every `password` in pwrotd_secrets.record is sealed with the store key.

-- The leader's lease, timed by this database's clock. Every takeover increments `epoch`, the
-- fencing token that every write checks.
CREATE TABLE pwrotd_lease (
    id          smallint    PRIMARY KEY CHECK (id = 1),
    holder      text        NOT NULL DEFAULT '',
    epoch       bigint      NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity',
    acquired_at timestamptz
);
INSERT INTO pwrotd_lease (id) VALUES (1);

-- Facts about the store itself: the key check value.
CREATE TABLE pwrotd_meta (
    name  text PRIMARY KEY,
    value text NOT NULL
);

-- One row per account: its secret file (docs/protocol.md#secret-files), passwords sealed.
CREATE SEQUENCE pwrotd_secrets_seq;
CREATE TABLE pwrotd_secrets (
    account    text        PRIMARY KEY,
    seq        bigint      NOT NULL,
    version    bigint      NOT NULL,
    record     jsonb       NOT NULL,
    epoch      bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The audit trail of every replica's leader terms.
CREATE TABLE pwrotd_audit (
    id      bigserial   PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    account text        NOT NULL,
    node    text        NOT NULL,
    epoch   bigint      NOT NULL,
    record  jsonb       NOT NULL
);
CREATE INDEX pwrotd_audit_account ON pwrotd_audit (account, id);

-- Every replica: when it last reported, and when its local files last matched the store.
CREATE TABLE pwrotd_replicas (
    node        text        PRIMARY KEY,
    version     text        NOT NULL,
    seen_at     timestamptz NOT NULL,
    mirrored_at timestamptz
);

-- Rotations asked for on a replica that is not the leader; the leader takes them.
CREATE TABLE pwrotd_requests (
    id      bigserial   PRIMARY KEY,
    account text,
    node    text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
