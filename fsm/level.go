package fsm

import (
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Feature levels let a rolling upgrade widen what the log may carry
// without two versions applying one entry differently. A version knows
// the features up to its Level. The cluster's level is replicated state,
// raised (never lowered) by a CmdClusterLevel command that the leader
// proposes once every member says it knows that level; until then, every
// replica of this version refuses what needs it, exactly as an older
// replica does (which cannot even decode it), so the replicas agree
// whatever mix of versions applies the log.
//
// Level 1 allows:
//   - hub names with '-' (chat-room), as ASP.NET Core routes them;
//   - an invocation command's trailing flags: an application's value, a
//     stream's items and end, a call to the client (stateful connections).
const Level = 1

// CmdClusterLevel raises the cluster's feature level. It carries
// IgnoreUnknownFlag: a version that does not know it skips it (it never
// sees a command that needs the level, since the level is raised only
// once every member knows it).
const CmdClusterLevel CommandType = 15 | IgnoreUnknownFlag

// metaClusterLevel is the meta key of the cluster's feature level.
var metaClusterLevel = []byte("clusterLevel")

// EncodeClusterLevel encodes the command that raises the cluster's
// feature level to level.
func EncodeClusterLevel(level uint64) Command {
	e := encoder{}
	e.byte(byte(CmdClusterLevel))
	e.uvarint(level)
	return e.buf
}

// clusterLevel is a parsed CmdClusterLevel.
type clusterLevel struct{ level uint64 }

func parseClusterLevel(payload []byte) (*clusterLevel, error) {
	d := decoder{buf: payload}
	l := &clusterLevel{level: d.uvarint()}
	if err := d.done("cluster level"); err != nil {
		return nil, err
	}
	if l.level > Level {
		// A level this version does not know: refused, so that this
		// replica never claims features it lacks.
		return nil, fmt.Errorf("%w: cluster level %d is above this version's %d", ErrUnknownCommand, l.level, Level)
	}
	return l, nil
}

// raiseLevel applies a CmdClusterLevel: the level only goes up.
func (ap *applyState) raiseLevel(l *clusterLevel) (Result, error) {
	meta := ap.tx.Bucket(bucketMeta)
	if l.level <= getU64(meta, metaClusterLevel) {
		return Result{}, nil
	}
	return Result{}, putU64(meta, metaClusterLevel, l.level)
}

// ClusterLevel is the cluster's feature level as this replica has applied
// it.
func (f *FSM) ClusterLevel() uint64 {
	var level uint64
	_ = f.view(func(tx *bolt.Tx) error {
		level = getU64(tx.Bucket(bucketMeta), metaClusterLevel)
		return nil
	})
	return level
}

// HubLevel is the feature level a hub name needs: 1 for a name with '-'.
func HubLevel(hub string) uint64 {
	if strings.IndexByte(hub, '-') >= 0 {
		return 1
	}
	return 0
}

// needsLevel is the feature level a parsed command needs, and why.
func needsLevel(parsed any) (uint64, string) {
	var hub string
	switch c := parsed.(type) {
	case *Publish:
		hub = c.Hub
	case *Membership:
		hub = c.Hub
	case *Connection:
		hub = c.Hub
	case *StatefulOpen:
		hub = c.Hub
	case *UserGroupTTL:
		hub = c.Hub
	case *parsedExecute:
		hub = c.Hub
	case *Invocation:
		if c.HasValue || c.Item || c.StreamEnd || c.Call {
			return 1, "an application's result, a stream or a call to the client on a stateful connection"
		}
		hub = c.Hub
	}
	if HubLevel(hub) > 0 {
		return HubLevel(hub), fmt.Sprintf("hub name %q (with '-')", hub)
	}
	return 0, ""
}

// gate refuses a command that needs a feature level the cluster has not
// reached: as a replica of an older version refuses it, nothing changes.
func (ap *applyState) gate(parsed any) (Result, bool) {
	need, what := needsLevel(parsed)
	if need == 0 {
		return Result{}, false
	}
	if have := getU64(ap.tx.Bucket(bucketMeta), metaClusterLevel); have < need {
		return Result{Err: fmt.Errorf("%w: %s needs cluster feature level %d; the cluster is at %d until every member runs a version that knows it", ErrInvalidCommand, what, need, have)}, true
	}
	return Result{}, false
}
