package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The bbolt schema. Every key that holds names length-prefixes them, so no
// name can forge another's key and a prefix scan never crosses names.
//
//	meta      fixed keys below                          → uint64 (big-endian)
//	messages  index (u64)                               → record: varint ts + publish payload
//	streams   lp(hub) kind lp(name) index (u64)         → empty  (per-audience index of messages)
//	groups    lp(hub) lp(group) memberKind lp(member)   → empty
//	memberOf  lp(hub) memberKind lp(member) lp(group)   → empty  (reverse of groups)
//	conns     lp(hub) lp(connID)                        → connection record
//	userConns lp(hub) lp(user) lp(connID)               → empty
//	nodes     node id                                   → node info
//	idem      idempotency key                           → index (u64) + ts (u64)
//	idemTime  ts (u64) key                              → empty  (expiry order)
var (
	bucketMeta      = []byte("meta")
	bucketMessages  = []byte("messages")
	bucketStreams   = []byte("streams")
	bucketGroups    = []byte("groups")
	bucketMemberOf  = []byte("memberOf")
	bucketConns     = []byte("conns")
	bucketUserConns = []byte("userConns")
	bucketNodes     = []byte("nodes")
	bucketIdem      = []byte("idem")
	bucketIdemTime  = []byte("idemTime")

	allBuckets = [][]byte{bucketMeta, bucketMessages, bucketStreams, bucketGroups, bucketMemberOf,
		bucketConns, bucketUserConns, bucketNodes, bucketIdem, bucketIdemTime,
		bucketStateful, bucketTokens, bucketCompletions, bucketHistory,
		bucketGroupTTL, bucketGroupTTLOf}
)

// Keys of the meta bucket.
var (
	metaSchema       = []byte("schema")       // schemaVersion
	metaAppliedIndex = []byte("appliedIndex") // last Raft index applied
	metaLastMessage  = []byte("lastMessage")  // highest message index ever assigned
	metaFirstMessage = []byte("firstMessage") // oldest retained message index (lastMessage+1 when empty)
	metaBytes        = []byte("bytes")        // total size of retained message records
)

// schemaVersion is bumped when the bbolt layout changes incompatibly.
const schemaVersion = 1

// Stream kinds: which per-audience index a message is listed in.
const (
	streamAll        byte = 'a'
	streamGroup      byte = 'g'
	streamUser       byte = 'u'
	streamConnection byte = 'c'
)

func appendLP(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func streamPrefix(hub string, kind byte, name string) []byte {
	b := make([]byte, 0, 4+len(hub)+len(name)+8)
	b = appendLP(b, hub)
	b = append(b, kind)
	return appendLP(b, name)
}

func streamEntryKey(prefix []byte, index uint64) []byte {
	k := make([]byte, len(prefix)+8)
	copy(k, prefix)
	binary.BigEndian.PutUint64(k[len(prefix):], index)
	return k
}

// streamsOf lists the stream prefixes a message is indexed under.
func streamsOf(p *Publish) [][]byte {
	switch p.Audience {
	case ToAll:
		return [][]byte{streamPrefix(p.Hub, streamAll, "")}
	case ToGroups:
		return namedStreams(p.Hub, streamGroup, p.Names)
	case ToUsers:
		return namedStreams(p.Hub, streamUser, p.Names)
	case ToConnections:
		return namedStreams(p.Hub, streamConnection, p.Names)
	}
	return nil
}

func namedStreams(hub string, kind byte, names []string) [][]byte {
	out := make([][]byte, 0, len(names))
	seen := make(map[string]struct{}, len(names))
	for _, n := range names {
		if _, dup := seen[n]; dup {
			continue
		}
		seen[n] = struct{}{}
		out = append(out, streamPrefix(hub, kind, n))
	}
	return out
}

func groupPrefix(hub, group string) []byte {
	return appendLP(appendLP(nil, hub), group)
}

func groupKey(hub, group string, kind MemberKind, member string) []byte {
	return appendLP(append(groupPrefix(hub, group), byte(kind)), member)
}

func memberOfPrefix(hub string, kind MemberKind, member string) []byte {
	return appendLP(append(appendLP(nil, hub), byte(kind)), member)
}

func memberOfKey(hub string, kind MemberKind, member, group string) []byte {
	return appendLP(memberOfPrefix(hub, kind, member), group)
}

func connKey(hub, conn string) []byte { return appendLP(appendLP(nil, hub), conn) }

func userConnsPrefix(hub, user string) []byte { return appendLP(appendLP(nil, hub), user) }

// readLP reads one length-prefixed string from the front of b.
func readLP(b []byte) (string, []byte, bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || uint64(len(b)-w) < n {
		return "", nil, false
	}
	return string(b[w : w+int(n)]), b[w+int(n):], true
}

// eachNameUnder calls fn with each key of b under prefix whose rest is
// exactly one length-prefixed name, passing that name and the key's value.
// Any other key under prefix is corrupt: the error names it as what. An
// error from fn ends the walk and is returned.
func eachNameUnder(b *bolt.Bucket, prefix []byte, what string, fn func(name string, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		name, rest, ok := readLP(k[len(prefix):])
		if !ok || len(rest) != 0 {
			return fmt.Errorf("%w: %s", ErrCorrupt, what)
		}
		if err := fn(name, v); err != nil {
			return err
		}
	}
	return nil
}

// encodeRecord is the stored form of a message: the proposer's timestamp and
// the publish command payload (without its type byte).
func encodeRecord(ts int64, cmd Command) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(cmd)-1)
	b = binary.AppendVarint(b, ts)
	return append(b, cmd[1:]...)
}

func decodeRecord(b []byte) (int64, *Publish, error) {
	ts, n := binary.Varint(b)
	if n <= 0 {
		return 0, nil, fmt.Errorf("decode record: %w: timestamp", ErrCorrupt)
	}
	p, err := decodePublish(b[n:])
	return ts, p, err
}

func getU64(b *bolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putU64(b *bolt.Bucket, key []byte, v uint64) error {
	return b.Put(key, u64key(v))
}

// initSchema creates the buckets of a new store and checks the version of an
// existing one.
func initSchema(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	switch v := getU64(meta, metaSchema); v {
	case 0:
		if err := putU64(meta, metaSchema, schemaVersion); err != nil {
			return err
		}
		return putU64(meta, metaFirstMessage, 1)
	case schemaVersion:
		return nil
	default:
		return fmt.Errorf("store schema version %d is not supported (want %d)", v, schemaVersion)
	}
}
