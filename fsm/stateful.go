package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
)

// Stateful connections (SignalR stateful reconnect) can resume on any node.
// Everything the server numbers for such a connection is derived from log
// entries: the messages addressed to it (with group membership taken at
// each message's position, from the membership history) and the
// completions of its own invocations, which ride on the entries that carry
// its sends. Small checkpoints of acknowledged positions are replicated in
// batches by the holder.

// More command types (see commands.go; append only).
const (
	CmdInvocation     CommandType = 9  // a stateful connection's invocation: its command and completion
	CmdCheckpoint     CommandType = 10 // acknowledged positions of stateful connections
	CmdStatefulOpen   CommandType = 11 // a stateful connection opened, or resumed on another node
	posSize                       = 21 // encoded Position
	orderCompletionOf byte        = 0  // a send's completion: just before its message
	orderMessage      byte        = 1
	orderCompletion   byte        = 2 // other completions: after the message they follow
)

// Position orders the events of a stateful connection's stream: messages
// and completions, in log order.
type Position struct {
	Msg   uint64 // message index the event is at or follows
	Order byte   // completion of a send (0), message (1), other completion (2)
	Entry uint64 // Raft index of the completion's entry
	Off   uint32 // command offset of the completion in its entry
}

// Less orders positions.
func (p Position) Less(q Position) bool {
	return bytes.Compare(p.key(), q.key()) < 0
}

func (p Position) key() []byte {
	k := make([]byte, posSize)
	binary.BigEndian.PutUint64(k, p.Msg)
	k[8] = p.Order
	binary.BigEndian.PutUint64(k[9:], p.Entry)
	binary.BigEndian.PutUint32(k[17:], p.Off)
	return k
}

func positionFromKey(k []byte) Position {
	return Position{Msg: binary.BigEndian.Uint64(k), Order: k[8], Entry: binary.BigEndian.Uint64(k[9:]), Off: binary.BigEndian.Uint32(k[17:])}
}

// StatefulOpen records a stateful connection, or moves it to another
// holder on a resume. TokenHash lets any node recognise the connection's
// secret token without storing it.
type StatefulOpen struct {
	Hub, ConnID, UserID, NodeID string
	Protocol                    string // the hub protocol the client speaks
	TokenHash                   []byte
}

// Invocation is a stateful connection's invocation: ClientSeq numbers it in
// the client's trackable messages, so a resent duplicate is dropped; Inner
// is the command it asks for (empty when it failed before reaching the
// log, with Error saying why). InvocationID is empty for fire-and-forget.
type Invocation struct {
	Hub, ConnID  string
	InvocationID string
	ClientSeq    uint64
	Error        string
	Inner        Command
	AppValue
}

// AppValue is what an invocation command carries for application logic
// (an upstream webhook, Go hubs): a result the application computed, or
// one event of its streams or calls to the client. It is written as a
// trailing part only when something is set, so a relay invocation encodes
// as it always did (and needs no feature level, see level.go).
type AppValue struct {
	// Value is the bytes of one value in ValueFormat (an encoding the
	// SignalR layer names); HasValue tells a null result from none.
	HasValue    bool
	ValueFormat byte
	Value       []byte
	// Item: one item of the stream InvocationID instead of a completion;
	// not numbered among the client's messages (ClientSeq is 0).
	Item bool
	// StreamEnd: the end of the stream InvocationID (the client's stream
	// invocation was numbered when it started): a completion, with Error
	// if it failed, not numbered.
	StreamEnd bool
	// Call: an invocation the server sends to the client (a client result
	// asked over REST), unnumbered: Target with Value as its arguments (an
	// array), InvocationID the id the client answers.
	Call   bool
	Target string
	// StreamStart: the client's stream invocation InvocationID started
	// (numbered, no completion yet). Until its StreamEnd it is open: a
	// resume on another node ends it with an error completion, since the
	// node that ran it is no longer serving the connection.
	StreamStart bool
}

// app value flags, the first byte of the trailing part.
const (
	invocationHasValue byte = 1 << iota
	invocationItem
	invocationStreamEnd
	invocationCall
	invocationStreamStart
)

func (v *AppValue) flags() byte {
	var f byte
	for _, b := range []struct {
		set  bool
		flag byte
	}{{v.HasValue, invocationHasValue}, {v.Item, invocationItem}, {v.StreamEnd, invocationStreamEnd}, {v.Call, invocationCall}, {v.StreamStart, invocationStreamStart}} {
		if b.set {
			f |= b.flag
		}
	}
	return f
}

// encode appends the trailing part, if anything is set.
func (v *AppValue) encode(e *encoder) {
	flags := v.flags()
	if flags == 0 {
		return
	}
	e.byte(flags)
	e.byte(v.ValueFormat)
	e.bytes(v.Value)
	if v.Call {
		e.string(v.Target)
	}
}

// decode reads the trailing part, if there is one, and returns its flags.
func (v *AppValue) decode(d *decoder) byte {
	if d.err != nil || len(d.buf) == 0 {
		return 0
	}
	flags := d.byte()
	v.HasValue, v.Item = flags&invocationHasValue != 0, flags&invocationItem != 0
	v.StreamEnd, v.Call = flags&invocationStreamEnd != 0, flags&invocationCall != 0
	v.StreamStart = flags&invocationStreamStart != 0
	v.ValueFormat, v.Value = d.byte(), d.bytes()
	if v.Call {
		v.Target = d.string()
	}
	return flags
}

// Checkpoint says a stateful connection's client acknowledged its stream up
// to Seq, which is the event at Pos.
type Checkpoint struct {
	Hub, ConnID string
	Seq         uint64
	Pos         Position
}

// EncodeStatefulOpen encodes a stateful open or takeover.
func EncodeStatefulOpen(o *StatefulOpen) Command {
	e := encoder{}
	e.byte(byte(CmdStatefulOpen))
	e.string(o.Hub)
	e.string(o.ConnID)
	e.string(o.UserID)
	e.string(o.NodeID)
	e.string(o.Protocol)
	e.bytes(o.TokenHash)
	return e.buf
}

// EncodeInvocation encodes a stateful connection's invocation.
func EncodeInvocation(inv *Invocation) Command {
	e := encoder{}
	e.byte(byte(CmdInvocation))
	e.string(inv.Hub)
	e.string(inv.ConnID)
	e.string(inv.InvocationID)
	e.uvarint(inv.ClientSeq)
	e.string(inv.Error)
	e.bytes(inv.Inner)
	inv.AppValue.encode(&e)
	return e.buf
}

// checkAppValue refuses an invocation whose application part (with these
// flags) is not one of the shapes this code writes.
func (inv *Invocation) checkAppValue(flags byte) error {
	if flags == 0 {
		return nil
	}
	kinds := 0
	for _, k := range []bool{inv.Item, inv.StreamEnd, inv.Call, inv.StreamStart} {
		if k {
			kinds++
		}
	}
	unnumbered := inv.ClientSeq == 0 && len(inv.Inner) == 0 && inv.InvocationID != ""
	switch {
	case flags&^(invocationHasValue|invocationItem|invocationStreamEnd|invocationCall|invocationStreamStart) != 0:
		return fmt.Errorf("%w: invocation flags %#x", ErrInvalidCommand, flags)
	case kinds > 1:
		return fmt.Errorf("%w: an invocation command is a stream's start, item or end or a call to the client, only one", ErrInvalidCommand)
	case inv.StreamStart && (inv.ClientSeq == 0 || inv.InvocationID == "" || len(inv.Inner) > 0 || inv.HasValue || inv.Error != ""):
		return fmt.Errorf("%w: a stream's start is a numbered invocation with an id, nothing else", ErrInvalidCommand)
	case inv.Call && (!unnumbered || inv.Target == "" || !inv.HasValue || inv.Error != ""):
		return fmt.Errorf("%w: a call to the client names its id and target and carries its arguments, nothing else", ErrInvalidCommand)
	case inv.Item && (!unnumbered || !inv.HasValue || inv.Error != ""):
		return fmt.Errorf("%w: a stream item names its stream, carries a value and nothing else", ErrInvalidCommand)
	case inv.StreamEnd && (!unnumbered || inv.HasValue):
		return fmt.Errorf("%w: a stream's end names its stream and at most an error", ErrInvalidCommand)
	}
	return nil
}

// EncodeCheckpoints encodes a holder's batch of checkpoints. A checkpoint
// for a connection that another node has taken over meanwhile is ignored.
func EncodeCheckpoints(nodeID string, cps []Checkpoint) Command {
	e := encoder{}
	e.byte(byte(CmdCheckpoint))
	e.string(nodeID)
	e.uvarint(uint64(len(cps)))
	for _, cp := range cps {
		e.string(cp.Hub)
		e.string(cp.ConnID)
		e.uvarint(cp.Seq)
		e.bytes(cp.Pos.key())
	}
	return e.buf
}

// statefulRecord is the replicated state of a stateful connection.
type statefulRecord struct {
	OpenPos   uint64 // last message index when it opened: later messages are for it
	ClientSeq uint64 // highest client message applied
	AckSeq    uint64 // checkpoint: acknowledged stream position
	AckPos    Position
	TokenHash []byte
	Protocol  string
}

func (r *statefulRecord) encode() []byte {
	e := encoder{}
	e.uvarint(r.OpenPos)
	e.uvarint(r.ClientSeq)
	e.uvarint(r.AckSeq)
	e.bytes(r.AckPos.key())
	e.bytes(r.TokenHash)
	e.string(r.Protocol)
	return e.buf
}

func decodeStatefulRecord(b []byte) (*statefulRecord, error) {
	d := decoder{buf: b}
	r := &statefulRecord{OpenPos: d.uvarint(), ClientSeq: d.uvarint(), AckSeq: d.uvarint()}
	pos := d.bytes()
	r.TokenHash = append([]byte(nil), d.bytes()...)
	r.Protocol = d.string()
	if err := d.done("stateful record"); err != nil {
		return nil, err
	}
	if len(pos) != posSize {
		return nil, fmt.Errorf("%w: stateful position", ErrCorrupt)
	}
	r.AckPos = positionFromKey(pos)
	return r, nil
}

// Buckets of stateful connections:
//
//	stateful    lp(hub) lp(conn)                               → statefulRecord
//	tokens      token hash                                     → lp(hub) lp(conn)
//	completions lp(hub) lp(conn) position                      → completion record
//	history     lp(hub) kind lp(member) lp(group) from (u64)   → to (u64; MaxUint64 while a member)
var (
	bucketStateful    = []byte("stateful")
	bucketTokens      = []byte("tokens")
	bucketCompletions = []byte("completions")
	bucketHistory     = []byte("history")
)

func (ap *applyState) statefulBucket() *bolt.Bucket { return ap.tx.Bucket(bucketStateful) }

// statefulOpen records a stateful connection; parseCommand validated o.
func (ap *applyState) statefulOpen(o *StatefulOpen) (Result, error) {
	key := connKey(o.Hub, o.ConnID)
	if v := ap.statefulBucket().Get(key); v != nil {
		rec, err := decodeStatefulRecord(v)
		if err != nil {
			return Result{}, err
		}
		if !bytes.Equal(rec.TokenHash, o.TokenHash) {
			return Result{Err: fmt.Errorf("%w: token does not match connection %q", ErrInvalidCommand, o.ConnID)}, nil
		}
		// A resume on another node: the holder changes, and the streams the
		// old holder was running end.
		if err := ap.interruptAppStreams(key, o.NodeID); err != nil {
			return Result{}, err
		}
		return ap.connOpen(&Connection{Hub: o.Hub, ConnID: o.ConnID, UserID: o.UserID, NodeID: o.NodeID})
	}
	if ap.conns.Get(key) != nil {
		return Result{Err: fmt.Errorf("%w: connection %q is already open", ErrInvalidCommand, o.ConnID)}, nil
	}
	rec := &statefulRecord{OpenPos: ap.last, AckPos: Position{Msg: ap.last, Order: orderCompletion}, TokenHash: o.TokenHash, Protocol: o.Protocol}
	if err := ap.statefulBucket().Put(key, rec.encode()); err != nil {
		return Result{}, err
	}
	if err := ap.tx.Bucket(bucketTokens).Put(o.TokenHash, key); err != nil {
		return Result{}, err
	}
	return ap.connOpen(&Connection{Hub: o.Hub, ConnID: o.ConnID, UserID: o.UserID, NodeID: o.NodeID})
}

// invocation applies a stateful connection's invocation once per client
// sequence number and records its completion at its position in the
// connection's stream.
func (ap *applyState) invocation(ts int64, inv *Invocation) (Result, error) {
	key := connKey(inv.Hub, inv.ConnID)
	v := ap.statefulBucket().Get(key)
	if v == nil {
		return Result{Err: fmt.Errorf("%w: no stateful connection %q", ErrInvalidCommand, inv.ConnID)}, nil
	}
	rec, err := decodeStatefulRecord(v)
	if err != nil {
		return Result{}, err
	}
	if inv.Item || inv.StreamEnd || inv.Call {
		// A stream's item or end, or a call to the client: recorded in the
		// connection's stream, not numbered among the client's messages.
		if inv.StreamEnd {
			if err := ap.closeAppStream(key, inv.InvocationID); err != nil {
				return Result{}, err
			}
		}
		pos := Position{Msg: ap.last, Order: orderCompletion, Entry: ap.entry, Off: ap.off}
		c := completionRecord{InvocationID: inv.InvocationID, Error: inv.Error}
		if inv.Item || inv.Call {
			c = completionRecord{InvocationID: inv.InvocationID, AppValue: inv.AppValue}
			c.StreamEnd = false
		}
		return Result{}, ap.tx.Bucket(bucketCompletions).Put(append(connKey(inv.Hub, inv.ConnID), pos.key()...), c.encode())
	}
	if inv.ClientSeq <= rec.ClientSeq {
		return Result{Duplicate: true}, nil // a resent message already applied
	}
	rec.ClientSeq = inv.ClientSeq
	if err := ap.statefulBucket().Put(key, rec.encode()); err != nil {
		return Result{}, err
	}
	var res Result
	errMsg := inv.Error
	if len(inv.Inner) > 0 { // parseCommand allowed only a publish or a membership change
		res, err = ap.applyCommand(ts, inv.Inner)
		if err != nil {
			return Result{}, err
		}
		if res.Err != nil && errMsg == "" {
			errMsg = res.Err.Error()
		}
	}
	if inv.StreamStart {
		return res, ap.openAppStream(key, inv.InvocationID)
	}
	if inv.InvocationID == "" {
		return res, nil
	}
	pos := Position{Msg: ap.last, Order: orderCompletion, Entry: ap.entry, Off: ap.off}
	c := completionRecord{InvocationID: inv.InvocationID, Error: errMsg}
	if inv.HasValue && errMsg == "" {
		c.AppValue = AppValue{HasValue: true, ValueFormat: inv.ValueFormat, Value: inv.Value}
	}
	if res.Index != 0 && errMsg == "" {
		pos.Msg, pos.Order = res.Index, orderCompletionOf
		c.HasResult, c.Result = true, res.Index
	}
	return res, ap.tx.Bucket(bucketCompletions).Put(append(connKey(inv.Hub, inv.ConnID), pos.key()...), c.encode())
}

// completionRecord is an event of a stateful connection's stream that is
// not a message: a completion (with the message index of a send, or an
// application's value) or an item of a stream the application sends.
type completionRecord struct {
	InvocationID string
	HasResult    bool
	Result       uint64
	Error        string
	AppValue     // written only when set, as in Invocation
}

func (c *completionRecord) encode() []byte {
	e := encoder{}
	e.string(c.InvocationID)
	if c.HasResult {
		e.byte(1)
	} else {
		e.byte(0)
	}
	e.uvarint(c.Result)
	e.string(c.Error)
	c.AppValue.encode(&e)
	return e.buf
}

func decodeCompletion(b []byte) (completionRecord, error) {
	d := decoder{buf: b}
	c := completionRecord{InvocationID: d.string(), HasResult: d.byte() == 1, Result: d.uvarint(), Error: d.string()}
	c.AppValue.decode(&d)
	return c, d.done("completion")
}

func (ap *applyState) checkpoints(b *checkpointBatch) (Result, error) {
	holder, cps := b.holder, b.cps
	for _, c := range cps {
		key := connKey(c.hub, c.conn)
		v := ap.statefulBucket().Get(key)
		if v == nil || len(c.pos) != posSize {
			continue // closed meanwhile
		}
		if rec := ap.conns.Get(key); rec != nil {
			d := decoder{buf: rec}
			d.string() // user
			if node := d.string(); node != holder {
				continue // taken over by another node: its numbering rules now
			}
		}
		rec, err := decodeStatefulRecord(v)
		if err != nil {
			return Result{}, err
		}
		if c.seq <= rec.AckSeq {
			continue
		}
		rec.AckSeq, rec.AckPos = c.seq, positionFromKey(c.pos)
		if err := ap.statefulBucket().Put(key, rec.encode()); err != nil {
			return Result{}, err
		}
		// Completions the client acknowledged are no longer needed.
		if err := deletePrefixBefore(ap.tx.Bucket(bucketCompletions), key, c.pos); err != nil {
			return Result{}, err
		}
	}
	return Result{}, nil
}

// deletePrefixBefore deletes the keys prefix+k with k <= limit.
func deletePrefixBefore(b *bolt.Bucket, prefix, limit []byte) error {
	var doomed [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if bytes.Compare(k[len(prefix):], limit) > 0 {
			break
		}
		doomed = append(doomed, append([]byte(nil), k...))
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	var doomed [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		doomed = append(doomed, append([]byte(nil), k...))
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// recordHistory keeps the intervals of message indexes during which a
// member was in a group: messages after a join and up to a leave are the
// member's. Kept for users, and for stateful connections. Closed intervals
// that no stateful connection can read any more are dropped (see
// historyHorizon), so a member that joins and leaves again and again does
// not grow the history past what retention keeps.
func (ap *applyState) recordHistory(hub, group string, kind MemberKind, member string, add bool) error {
	if kind == MemberConnection && ap.statefulBucket().Get(connKey(hub, member)) == nil {
		return nil
	}
	horizon, err := ap.historyHorizon(hub, kind, member)
	if err != nil {
		return err
	}
	h := ap.tx.Bucket(bucketHistory)
	prefix := memberOfKey(hub, kind, member, group) // the group's intervals follow it
	open, err := trimIntervals(h, prefix, horizon)
	if err != nil {
		return err
	}
	switch {
	case add && open == nil:
		return h.Put(append(append([]byte(nil), prefix...), u64key(ap.last)...), u64key(math.MaxUint64))
	case !add && open != nil:
		if ap.last <= horizon || binary.BigEndian.Uint64(open[len(prefix):]) == ap.last {
			// Nobody will read it, or it holds no message: (from, from].
			return h.Delete(open)
		}
		return h.Put(open, u64key(ap.last))
	}
	return nil
}

// trimIntervals deletes the closed intervals under prefix (one member in
// one group) that end at or before horizon, and returns the key of the
// open interval, if the member is in the group.
func trimIntervals(h *bolt.Bucket, prefix []byte, horizon uint64) (open []byte, err error) {
	var doomed [][]byte
	c := h.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(k) != len(prefix)+8 {
			continue
		}
		if len(v) != 8 {
			return nil, fmt.Errorf("%w: history interval", ErrCorrupt)
		}
		switch to := binary.BigEndian.Uint64(v); {
		case to == math.MaxUint64:
			open = append([]byte(nil), k...)
		case to <= horizon:
			doomed = append(doomed, append([]byte(nil), k...))
		}
	}
	for _, k := range doomed {
		if err := h.Delete(k); err != nil {
			return nil, err
		}
	}
	return open, nil
}

// forgetStateful removes a closed connection's stateful data.
func (ap *applyState) forgetStateful(hub, conn string) error {
	key := connKey(hub, conn)
	v := ap.statefulBucket().Get(key)
	if v == nil {
		return nil
	}
	if rec, err := decodeStatefulRecord(v); err == nil {
		if err := ap.tx.Bucket(bucketTokens).Delete(rec.TokenHash); err != nil {
			return err
		}
	}
	if err := ap.statefulBucket().Delete(key); err != nil {
		return err
	}
	if err := deletePrefix(ap.tx.Bucket(bucketCompletions), key); err != nil {
		return err
	}
	if b := ap.tx.Bucket(bucketAppStreams); b != nil {
		if err := deletePrefix(b, key); err != nil {
			return err
		}
	}
	return deletePrefix(ap.tx.Bucket(bucketHistory), memberOfPrefix(hub, MemberConnection, conn))
}
