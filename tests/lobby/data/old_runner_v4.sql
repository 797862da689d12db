-- A lobby database made by the hand-written migration runner (schema_version steps 1-4),
-- written by that runner at commit c6b36ec and dumped with sqlite3's iterdump(): three
-- accounts with a character, a session and two items each, account 2 banned, then
-- account 3 deleted (cascade); one row in each game table.
BEGIN TRANSACTION;
CREATE TABLE account_bans (
	account_id INTEGER NOT NULL, 
	reason VARCHAR(200) NOT NULL, 
	banned_at FLOAT NOT NULL, 
	banned_by VARCHAR(64) NOT NULL, 
	PRIMARY KEY (account_id), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);
INSERT INTO "account_bans" VALUES(2,'griefing',180.0,'admin');
CREATE TABLE "accounts" (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	username VARCHAR(32) NOT NULL, 
	username_key VARCHAR(32) NOT NULL, 
	password_hash VARCHAR(255) NOT NULL, 
	created_at FLOAT NOT NULL, 
	last_login_at FLOAT, 
	UNIQUE (username_key)
);
INSERT INTO "accounts" VALUES(1,'User1','user1','$argon2id$h1',101.0,201.0);
INSERT INTO "accounts" VALUES(2,'User2','user2','$argon2id$h2',102.0,NULL);
CREATE TABLE "characters" (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	account_id INTEGER NOT NULL, 
	name VARCHAR(32) NOT NULL, 
	name_key VARCHAR(32) NOT NULL, 
	faction VARCHAR(64) NOT NULL, 
	character_class VARCHAR(64) NOT NULL, 
	level INTEGER NOT NULL, 
	experience INTEGER NOT NULL, 
	health INTEGER NOT NULL, 
	max_health INTEGER NOT NULL, 
	mana INTEGER NOT NULL, 
	max_mana INTEGER NOT NULL, 
	location_id INTEGER NOT NULL, 
	gold INTEGER NOT NULL, 
	created_at FLOAT NOT NULL, 
	UNIQUE (name_key), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);
INSERT INTO "characters" VALUES(1,1,'Hero1','hero1','Verdant Pact','Ranger',1,10,90,100,40,50,1,25,111.0);
INSERT INTO "characters" VALUES(2,2,'Hero2','hero2','Verdant Pact','Ranger',2,20,90,100,40,50,2,50,112.0);
CREATE TABLE items (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	template_id INTEGER NOT NULL, 
	owner_id INTEGER NOT NULL, 
	created_at FLOAT NOT NULL, 
	FOREIGN KEY(owner_id) REFERENCES characters (id) ON DELETE CASCADE
);
INSERT INTO "items" VALUES(1,1,1,140.0);
INSERT INTO "items" VALUES(2,2,1,140.0);
INSERT INTO "items" VALUES(3,1,2,140.0);
INSERT INTO "items" VALUES(4,2,2,140.0);
CREATE TABLE parties (
	party_id VARCHAR(64) NOT NULL, 
	data TEXT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (party_id)
);
INSERT INTO "parties" VALUES('p-1','{"leader": 1, "members": [1, 2]}',160.0);
CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	description VARCHAR(200) NOT NULL, 
	applied_at FLOAT NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO "schema_version" VALUES(1,'accounts, characters, sessions',1.0);
INSERT INTO "schema_version" VALUES(2,'game: world meta, shard owners, event log, parties, items, trades',1.0);
INSERT INTO "schema_version" VALUES(3,'ids of accounts, characters, sessions and items are never reused',1.0);
INSERT INTO "schema_version" VALUES(4,'admin: account bans',1.0);
CREATE TABLE "sessions" (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	token_hash VARCHAR(64) NOT NULL, 
	account_id INTEGER NOT NULL, 
	created_at FLOAT NOT NULL, 
	last_seen_at FLOAT NOT NULL, 
	expires_at FLOAT NOT NULL, 
	character_id INTEGER, 
	peer_info TEXT, 
	UNIQUE (token_hash), 
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE, 
	FOREIGN KEY(character_id) REFERENCES characters (id) ON DELETE SET NULL
);
INSERT INTO "sessions" VALUES(1,'0000000000000000000000000000000000000000000000000000000000000001',1,120.0,130.0,9999.0,1,'{"port": 4433}');
INSERT INTO "sessions" VALUES(2,'0000000000000000000000000000000000000000000000000000000000000002',2,120.0,130.0,9999.0,2,NULL);
CREATE TABLE shard_owners (
	shard_id INTEGER NOT NULL, 
	owner VARCHAR(64), 
	captured_at FLOAT, 
	captured_by INTEGER, 
	captured_by_name VARCHAR(64), 
	PRIMARY KEY (shard_id)
);
INSERT INTO "shard_owners" VALUES(1,'Verdant Pact',150.0,1,'Hero1');
CREATE TABLE trades (
	id INTEGER NOT NULL, 
	trade_id VARCHAR(64) NOT NULL, 
	initiator_id INTEGER NOT NULL, 
	partner_id INTEGER NOT NULL, 
	exchange TEXT NOT NULL, 
	completed_at FLOAT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "trades" VALUES(1,'t-1',1,2,'{"gold": 5}',170.0);
CREATE TABLE world_events (
	id INTEGER NOT NULL, 
	event_type VARCHAR(64) NOT NULL, 
	description TEXT NOT NULL, 
	data TEXT, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "world_events" VALUES(1,'shard_captured','Hero1 took shard 1','{"shard_id": 1}',150.0);
CREATE TABLE world_meta (
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);
INSERT INTO "world_meta" VALUES('reality','"ember"');
CREATE INDEX ix_world_events_created ON world_events (created_at);
CREATE INDEX ix_items_owner ON items (owner_id);
CREATE INDEX ix_characters_account ON characters (account_id);
CREATE INDEX ix_sessions_expires ON sessions (expires_at);
CREATE INDEX ix_sessions_account ON sessions (account_id);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('accounts',3);
INSERT INTO "sqlite_sequence" VALUES('characters',3);
INSERT INTO "sqlite_sequence" VALUES('sessions',3);
INSERT INTO "sqlite_sequence" VALUES('items',6);
COMMIT;
