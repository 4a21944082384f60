package fsm

import (
	"encoding/binary"
	"fmt"
)

// CommandType is the one-byte type of a replicated command. Values are part
// of the on-disk log format: only ever append new ones, never renumber.
type CommandType byte

// Command types. The numbering is pinned by a golden test.
const (
	CmdPublish     CommandType = 1 // a message to a hub audience
	CmdGroupAdd    CommandType = 2 // add a connection or user to a group
	CmdGroupRemove CommandType = 3 // remove a connection or user from a group (or all groups)
	CmdConnOpen    CommandType = 4 // a client connection opened on a node
	CmdConnClose   CommandType = 5 // a client connection closed
	CmdConnExpire  CommandType = 6 // a disconnected connection expired (decided by the cluster)
	CmdNodeInfo    CommandType = 7 // a node's advertised addresses
	CmdNodeRemove  CommandType = 8 // a node left the cluster

	// IgnoreUnknownFlag marks a command that an older version may skip if it
	// does not know the type, so rolling upgrades can introduce optional
	// commands. A command without the flag and of an unknown type stops the
	// state machine: replicas must never diverge.
	IgnoreUnknownFlag CommandType = 0x80
)

// String names the command type for logs.
func (t CommandType) String() string {
	switch t &^ IgnoreUnknownFlag {
	case CmdPublish:
		return "publish"
	case CmdGroupAdd:
		return "group-add"
	case CmdGroupRemove:
		return "group-remove"
	case CmdConnOpen:
		return "conn-open"
	case CmdConnClose:
		return "conn-close"
	case CmdConnExpire:
		return "conn-expire"
	case CmdNodeInfo:
		return "node-info"
	case CmdNodeRemove:
		return "node-remove"
	case CmdInvocation:
		return "invocation"
	case CmdCheckpoint:
		return "checkpoint"
	case CmdStatefulOpen:
		return "stateful-open"
	case CmdExecute:
		return "execute"
	case CmdUserGroupTTL:
		return "user-group-ttl"
	case CmdTick:
		return "tick"
	case CmdClusterLevel &^ IgnoreUnknownFlag:
		return "cluster-level"
	}
	return fmt.Sprintf("unknown(%d)", byte(t))
}

// entryVersion is the first byte of every Raft entry written by this code.
const entryVersion byte = 1

// entryHeaderSize is version byte plus 8-byte proposer timestamp.
const entryHeaderSize = 9

// Audience says who a published message is for.
type Audience byte

// Audiences. Pinned values, append only.
const (
	ToAll         Audience = 1 // every connection of the hub, except Excluded
	ToGroups      Audience = 2 // members of the named groups, except Excluded
	ToUsers       Audience = 3 // connections of the named users
	ToConnections Audience = 4 // the named connections
)

// String names the audience for logs and errors.
func (a Audience) String() string {
	switch a {
	case ToAll:
		return "all"
	case ToGroups:
		return "groups"
	case ToUsers:
		return "users"
	case ToConnections:
		return "connections"
	}
	return fmt.Sprintf("audience(%d)", byte(a))
}

// MemberKind says whether a group member is a connection or a user.
type MemberKind byte

// Member kinds. Pinned values, append only.
const (
	MemberConnection MemberKind = 1
	MemberUser       MemberKind = 2
)

// Publish is a message for an audience of one hub.
type Publish struct {
	Hub      string
	Audience Audience
	Names    []string // groups, users or connections; empty for ToAll
	Excluded []string // connection ids that must not receive it (ToAll, ToGroups)
	Target   string   // the client method to invoke
	// Arguments is the raw JSON array of arguments. For a MessagePack
	// sender it is the JSON form of MsgpackArguments (see hubproto's
	// MsgpackToJSONForm), for JSON readers.
	Arguments []byte
	// IdempotencyKey, when set, makes a retried publish with the same key
	// return the original index instead of appending again.
	IdempotencyKey string
	// MsgpackArguments, when set, is the MessagePack array of arguments
	// exactly as a MessagePack client sent them: MessagePack recipients get
	// these bytes, so no value changes type on the way. It is an optional
	// trailing field of the encoding: publishes written without it (REST,
	// JSON clients, and every entry of earlier versions) decode as before.
	MsgpackArguments []byte
}

// Membership adds or removes a member of a group. An empty Group with
// CmdGroupRemove removes the member from every group of the hub.
type Membership struct {
	Hub    string
	Group  string
	Kind   MemberKind
	Member string
}

// Connection records a client connection's life cycle.
type Connection struct {
	Hub    string
	ConnID string
	UserID string // set on open
	NodeID string // the node holding the connection; set on open, and on a holder's close
	Reason string // set on close/expire
}

// NodeInfo is a cluster member's advertised addresses.
type NodeInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
}

// Command is one encoded command: its type byte followed by its payload.
// Build one with the Encode* functions.
type Command []byte

// Type returns the command's type.
func (c Command) Type() CommandType {
	if len(c) == 0 {
		return 0
	}
	return CommandType(c[0])
}

// EncodePublish encodes a publish command.
func EncodePublish(p *Publish) Command {
	e := encoder{buf: make([]byte, 0, 40+len(p.Hub)+len(p.Target)+len(p.Arguments)+len(p.IdempotencyKey)+len(p.MsgpackArguments))}
	e.byte(byte(CmdPublish))
	e.string(p.Hub)
	e.byte(byte(p.Audience))
	e.strings(p.Names)
	e.strings(p.Excluded)
	e.string(p.Target)
	e.bytes(p.Arguments)
	e.string(p.IdempotencyKey)
	if len(p.MsgpackArguments) > 0 {
		e.bytes(p.MsgpackArguments)
	}
	return e.buf
}

// EncodeMembership encodes a group add (add=true) or remove command.
func EncodeMembership(m *Membership, add bool) Command {
	t := CmdGroupRemove
	if add {
		t = CmdGroupAdd
	}
	e := encoder{}
	e.byte(byte(t))
	e.string(m.Hub)
	e.string(m.Group)
	e.byte(byte(m.Kind))
	e.string(m.Member)
	return e.buf
}

// EncodeConnection encodes a connection life-cycle command of type t
// (CmdConnOpen, CmdConnClose or CmdConnExpire).
func EncodeConnection(t CommandType, c *Connection) Command {
	e := encoder{}
	e.byte(byte(t))
	e.string(c.Hub)
	e.string(c.ConnID)
	e.string(c.UserID)
	e.string(c.NodeID)
	e.string(c.Reason)
	return e.buf
}

// EncodeNodeInfo encodes a node's addresses.
func EncodeNodeInfo(n *NodeInfo) Command {
	e := encoder{}
	e.byte(byte(CmdNodeInfo))
	e.string(n.ID)
	e.string(n.RaftAddr)
	e.string(n.HTTPAddr)
	return e.buf
}

// EncodeNodeRemove encodes the removal of a node's record.
func EncodeNodeRemove(id string) Command {
	e := encoder{}
	e.byte(byte(CmdNodeRemove))
	e.string(id)
	return e.buf
}

func decodePublish(b []byte) (*Publish, error) {
	d := decoder{buf: b}
	p := &Publish{
		Hub:      d.string(),
		Audience: Audience(d.byte()),
		Names:    d.strings(),
		Excluded: d.strings(),
		Target:   d.string(),
	}
	p.Arguments = append([]byte(nil), d.bytes()...)
	p.IdempotencyKey = d.string()
	if d.err == nil && len(d.buf) > 0 {
		p.MsgpackArguments = append([]byte(nil), d.bytes()...)
		if d.err == nil && len(p.MsgpackArguments) == 0 {
			d.fail("empty messagepack arguments") // never written: absent instead
		}
	}
	return p, d.done("publish")
}

func decodeMembership(b []byte) (*Membership, error) {
	d := decoder{buf: b}
	m := &Membership{Hub: d.string(), Group: d.string(), Kind: MemberKind(d.byte()), Member: d.string()}
	return m, d.done("membership")
}

func decodeConnection(b []byte) (*Connection, error) {
	d := decoder{buf: b}
	c := &Connection{Hub: d.string(), ConnID: d.string(), UserID: d.string(), NodeID: d.string(), Reason: d.string()}
	return c, d.done("connection")
}

func decodeNodeInfo(b []byte) (*NodeInfo, error) {
	d := decoder{buf: b}
	n := &NodeInfo{ID: d.string(), RaftAddr: d.string(), HTTPAddr: d.string()}
	return n, d.done("node info")
}

// EncodeEntry packs commands into the data of one Raft entry, stamped with
// the proposer's clock (Unix nanoseconds): a header, then the batch
// framing of EncodeBatch. The stamp is the only notion of time the state
// machine has: retention by age and idempotency windows use it, so every
// replica decides the same.
func EncodeEntry(unixNano int64, cmds []Command) []byte {
	buf := make([]byte, entryHeaderSize, entryHeaderSize+batchSize(cmds))
	buf[0] = entryVersion
	binary.BigEndian.PutUint64(buf[1:9], uint64(unixNano))
	return appendBatch(buf, cmds)
}

// EncodeBatch frames commands as one batch: a count, then each command
// prefixed by its length (uvarints). A follower forwards its writes to the
// leader in this framing, and a Raft entry carries it after its header.
func EncodeBatch(cmds []Command) []byte {
	return appendBatch(make([]byte, 0, batchSize(cmds)), cmds)
}

func batchSize(cmds []Command) int {
	size := binary.MaxVarintLen64
	for _, c := range cmds {
		size += binary.MaxVarintLen64 + len(c)
	}
	return size
}

func appendBatch(buf []byte, cmds []Command) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(cmds)))
	for _, c := range cmds {
		buf = binary.AppendUvarint(buf, uint64(len(c)))
		buf = append(buf, c...)
	}
	return buf
}

// DecodeBatch splits what EncodeBatch framed; the commands alias b. A batch
// holds at least one command and no empty one.
func DecodeBatch(b []byte) ([]Command, error) {
	cmds, err := decodeBatch(b)
	if err != nil {
		return nil, fmt.Errorf("decode batch: %w", err)
	}
	return cmds, nil
}

func decodeBatch(b []byte) ([]Command, error) {
	d := decoder{buf: b}
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.buf)) {
		d.fail("command count")
	}
	if d.err != nil {
		return nil, d.err
	}
	if n == 0 {
		return nil, errEmptyEntry
	}
	cmds := make([]Command, 0, n)
	for i := uint64(0); i < n; i++ {
		c := d.bytes()
		if d.err == nil && len(c) == 0 {
			d.fail("empty command")
		}
		cmds = append(cmds, c)
	}
	return cmds, d.done("batch")
}

// errEmptyEntry is returned for an entry or batch without commands.
var errEmptyEntry = fmt.Errorf("%w: no commands", ErrCorrupt)

// DecodeEntry splits Raft entry data into its timestamp and commands. The
// commands alias data.
func DecodeEntry(data []byte) (unixNano int64, cmds []Command, err error) {
	if len(data) < entryHeaderSize {
		return 0, nil, fmt.Errorf("decode entry: %w: %d bytes", ErrCorrupt, len(data))
	}
	if data[0] != entryVersion {
		return 0, nil, fmt.Errorf("decode entry: %w: unknown entry version %d", ErrCorrupt, data[0])
	}
	unixNano = int64(binary.BigEndian.Uint64(data[1:9]))
	if cmds, err = decodeBatch(data[entryHeaderSize:]); err != nil {
		return 0, nil, fmt.Errorf("decode entry: %w", err)
	}
	return unixNano, cmds, nil
}
