package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Filter names what one reader follows in one hub (a subscription: it
// reads nothing itself). The reader's cursor covers all of
// it: a single message index.
type Filter struct {
	Hub         string
	Broadcast   bool     // messages to all connections of the hub
	Groups      []string // messages to these groups
	Users       []string // messages to these users
	Connections []string // messages to these connections
	// Self is the reader's own connection id, if it has one: messages that
	// exclude it are skipped.
	Self string
}

// Message is a retained message as a reader sees it.
type Message struct {
	Index     uint64          `json:"index"`
	Time      int64           `json:"-"` // proposer's stamp, Unix nanoseconds
	Hub       string          `json:"-"`
	Audience  Audience        `json:"-"`
	Names     []string        `json:"-"`
	Excluded  []string        `json:"-"`
	Target    string          `json:"target"`
	Arguments json.RawMessage `json:"arguments"`
	// MsgpackArguments is the MessagePack array of arguments as a
	// MessagePack client sent them, or nil (see Publish).
	MsgpackArguments []byte `json:"-"`
}

// Page is the answer to a cursor read.
type Page struct {
	// Messages addressed to the reader after the cursor, in index order.
	Messages []Message
	// Next is the cursor to read from next time. It can be past the last
	// message returned: messages in between were for other readers.
	Next uint64
	// Reset is set when messages after the cursor were already trimmed by
	// retention: the reader missed some and must resynchronise. Messages
	// then starts at Oldest.
	Reset bool
	// Oldest is the oldest message index still retained (set with Reset).
	Oldest uint64
}

// Read returns at most limit messages addressed to r with index > after.
// It seeks each of the reader's streams directly to the cursor: the cost
// grows with what is returned, not with the history.
func (f *FSM) Read(r *Filter, after uint64, limit int) (Page, error) {
	if page, ok := f.tail.read(r, after, max(limit, 1)); ok {
		return page, nil
	}
	return f.readStore(r, after, limit)
}

// readStore is Read from the store, for a cursor before the tail.
func (f *FSM) readStore(r *Filter, after uint64, limit int) (Page, error) {
	var page Page
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		page, err = readPage(tx, r, after, max(limit, 1))
		return err
	})
	return page, err
}

// messageOf is the reader's view of a stored message.
func messageOf(idx uint64, ts int64, p *Publish) Message {
	return Message{Index: idx, Time: ts, Hub: p.Hub, Audience: p.Audience, Names: p.Names,
		Excluded: p.Excluded, Target: p.Target, Arguments: p.Arguments, MsgpackArguments: p.MsgpackArguments}
}

func readPage(tx *bolt.Tx, r *Filter, after uint64, limit int) (Page, error) {
	meta := tx.Bucket(bucketMeta)
	first, last := getU64(meta, metaFirstMessage), getU64(meta, metaLastMessage)
	page := Page{Next: max(after, last)}
	start := after
	if first > 0 && after < first-1 { // not after+1 < first: after may be MaxUint64
		page.Reset, page.Oldest = true, first
		start = first - 1
	}
	if start >= last {
		return page, nil
	}
	indexes := collectIndexes(tx.Bucket(bucketStreams), readerStreams(r), start, last, limit)
	if len(indexes) == limit {
		page.Next = indexes[len(indexes)-1]
	}
	msgs := tx.Bucket(bucketMessages)
	page.Messages = make([]Message, 0, len(indexes))
	for _, idx := range indexes {
		rec := msgs.Get(u64key(idx))
		if rec == nil {
			return page, fmt.Errorf("%w: indexed message %d is missing", ErrCorrupt, idx)
		}
		ts, p, err := decodeRecord(rec)
		if err != nil {
			return page, fmt.Errorf("message %d: %w", idx, err)
		}
		if r.Self != "" && slices.Contains(p.Excluded, r.Self) {
			continue
		}
		page.Messages = append(page.Messages, messageOf(idx, ts, p))
	}
	return page, nil
}

func readerStreams(r *Filter) [][]byte {
	var out [][]byte
	if r.Broadcast {
		out = append(out, streamPrefix(r.Hub, streamAll, ""))
	}
	out = append(out, namedStreams(r.Hub, streamGroup, r.Groups)...)
	out = append(out, namedStreams(r.Hub, streamUser, r.Users)...)
	return append(out, namedStreams(r.Hub, streamConnection, r.Connections)...)
}

// collectIndexes merges the first limit indexes in (after, last] over the
// given streams, without duplicates (a message to two of the reader's
// groups is listed under both).
func collectIndexes(streams *bolt.Bucket, prefixes [][]byte, after, last uint64, limit int) []uint64 {
	var all []uint64
	c := streams.Cursor()
	for _, prefix := range prefixes {
		n := 0
		for k, _ := c.Seek(streamEntryKey(prefix, after+1)); k != nil && n < limit; k, _ = c.Next() {
			if len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
				break
			}
			idx := binary.BigEndian.Uint64(k[len(prefix):])
			if idx > last {
				break
			}
			all = append(all, idx)
			n++
		}
	}
	if len(prefixes) > 1 {
		slices.Sort(all)
		all = slices.Compact(all)
	}
	if len(all) > limit {
		all = all[:limit]
	}
	return all
}

// WaitRead is Read that blocks until it has something to say: at least one
// message or a reset. It returns early with an empty page when ctx ends;
// the error is then ctx's. It wakes only for messages of r's hub (see
// MessagesOf), not for every applied entry.
func (f *FSM) WaitRead(ctx context.Context, r *Filter, after uint64, limit int) (Page, error) {
	watch := MessagesOf(r.Hub)
	for {
		changed := f.watchers.wait(watch)
		page, err := f.Read(r, after, limit)
		if err != nil || len(page.Messages) > 0 || page.Reset {
			return page, err
		}
		if page.Next > after {
			// The page skipped messages that were not for r, or that all
			// excluded r.Self: read on from there before waiting.
			after = page.Next
			continue
		}
		select {
		case <-ctx.Done():
			return page, ctx.Err()
		case <-changed:
		}
	}
}

// ReadAll returns at most limit messages of every hub and audience with
// index > after, in index order: the feed a node's dispatcher follows to
// deliver each message to its own connections. Reset works as in Read.
func (f *FSM) ReadAll(after uint64, limit int) (Page, error) {
	limit = max(limit, 1)
	if page, ok := f.tail.readAll(after, limit); ok {
		return page, nil
	}
	return f.readAllStore(after, limit)
}

// readAllStore is ReadAll from the store, for a cursor before the tail.
func (f *FSM) readAllStore(after uint64, limit int) (Page, error) {
	var page Page
	err := f.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		first, last := getU64(meta, metaFirstMessage), getU64(meta, metaLastMessage)
		page.Next = max(after, last)
		start := after
		if first > 0 && after < first-1 {
			page.Reset, page.Oldest = true, first
			start = first - 1
		}
		c := tx.Bucket(bucketMessages).Cursor()
		for k, rec := c.Seek(u64key(start + 1)); k != nil && len(page.Messages) < limit; k, rec = c.Next() {
			idx := binary.BigEndian.Uint64(k)
			ts, p, err := decodeRecord(rec)
			if err != nil {
				return fmt.Errorf("message %d: %w", idx, err)
			}
			page.Messages = append(page.Messages, messageOf(idx, ts, p))
		}
		if len(page.Messages) == limit {
			page.Next = page.Messages[limit-1].Index
		}
		return nil
	})
	return page, err
}
