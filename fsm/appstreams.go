package fsm

import (
	"bytes"
	"fmt"
)

// The open server-to-client streams of stateful connections: a client's
// stream invocation that an application runs is recorded when it starts
// (StreamStart) and forgotten when it ends (StreamEnd). When the
// connection resumes on another node, the node that ran its open streams
// no longer serves it, so the takeover ends each of them with an error
// completion in the connection's stream: the client learns the stream
// failed instead of waiting for it forever.
//
//	appstreams  lp(hub) lp(conn) lp(stream id) → empty
//
// The bucket is made on first use (a store of an earlier version has
// none).
var bucketAppStreams = []byte("appstreams")

// errStreamInterrupted is the error an interrupted stream completes with.
const errStreamInterrupted = "The stream ended: the server that ran it no longer serves this connection; invoke it again."

// openAppStream records a stream as open.
func (ap *applyState) openAppStream(connKey []byte, streamID string) error {
	b, err := ap.tx.CreateBucketIfNotExists(bucketAppStreams)
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucketAppStreams, err)
	}
	return b.Put(appendLP(bytes.Clone(connKey), streamID), []byte{})
}

// closeAppStream forgets a stream (a StreamEnd of a stream that was never
// recorded open — a REST stream — changes nothing here).
func (ap *applyState) closeAppStream(connKey []byte, streamID string) error {
	b := ap.tx.Bucket(bucketAppStreams)
	if b == nil {
		return nil
	}
	return b.Delete(appendLP(bytes.Clone(connKey), streamID))
}

// interruptAppStreams ends the open streams of a connection that moves to
// newHolder, each with an error completion; nothing when it stays where
// it is.
func (ap *applyState) interruptAppStreams(connKey []byte, newHolder string) error {
	b := ap.tx.Bucket(bucketAppStreams)
	if b == nil {
		return nil
	}
	if rec := ap.conns.Get(connKey); rec != nil {
		d := decoder{buf: rec}
		d.string() // user
		if d.string() == newHolder {
			return nil
		}
	}
	var ids []string
	c := b.Cursor()
	for k, _ := c.Seek(connKey); k != nil && bytes.HasPrefix(k, connKey); k, _ = c.Next() {
		id, _, ok := readLP(k[len(connKey):])
		if !ok {
			return fmt.Errorf("%w: open stream key", ErrCorrupt)
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		// One completion per stream, all at this command's place in the
		// stream; the high bits of Off keep their keys apart.
		pos := Position{Msg: ap.last, Order: orderCompletion, Entry: ap.entry, Off: ap.off | uint32(i)<<20}
		rec := completionRecord{InvocationID: id, Error: errStreamInterrupted}
		if err := ap.tx.Bucket(bucketCompletions).Put(append(bytes.Clone(connKey), pos.key()...), rec.encode()); err != nil {
			return err
		}
		if err := b.Delete(appendLP(bytes.Clone(connKey), id)); err != nil {
			return err
		}
	}
	return nil
}
