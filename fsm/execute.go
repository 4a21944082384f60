package fsm

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Execute runs actions on the connections of a hub that a selection
// matches, as one command: the REST API's :execute (a filter and a list of
// commands) and :closeConnections (of a hub, a group or a user). The state
// machine selects the connections when it applies the command, from the
// connections and memberships it has applied so far, so every replica
// selects the same ones at the same log position, and a send reaches
// exactly the connections that matched there.

// More command types (see commands.go; append only).
const (
	CmdExecute CommandType = 12 // actions on the connections a selection matches
)

// ExecKind is the kind of an Execute action. Pinned values, append only.
type ExecKind byte

// Execute actions.
const (
	ExecSend  ExecKind = 1 // send a message to each matched connection
	ExecJoin  ExecKind = 2 // add each matched connection to a group
	ExecLeave ExecKind = 3 // remove each matched connection from a group
	ExecClose ExecKind = 4 // close each matched connection
)

// Limits of an Execute command.
const (
	MaxExecActions = 100  // actions in one command
	MaxReasonLen   = 1024 // bytes of a close reason
)

// ExecAction is one action of an Execute command.
type ExecAction struct {
	Kind      ExecKind
	Target    string // ExecSend: the client method
	Arguments []byte // ExecSend: the raw JSON array of arguments
	Group     string // ExecJoin, ExecLeave
	Reason    string // ExecClose
}

// Execute selects connections of a hub and runs its actions on each, in
// order. The selection is every connection of the hub, or only those in
// Group (directly or through their user) when Group is set, or only User's
// when User is set; minus Excluded; and only those Filter matches when it
// is set (see ParseFilter). Connections are selected once, before the
// first action; a closed connection takes no later action.
type Execute struct {
	Hub      string
	Group    string
	User     string
	Excluded []string
	Filter   string
	Actions  []ExecAction
}

// EncodeExecute encodes an Execute command.
func EncodeExecute(x *Execute) Command {
	e := encoder{}
	e.byte(byte(CmdExecute))
	e.string(x.Hub)
	e.string(x.Group)
	e.string(x.User)
	e.strings(x.Excluded)
	e.string(x.Filter)
	e.uvarint(uint64(len(x.Actions)))
	for _, a := range x.Actions {
		e.byte(byte(a.Kind))
		switch a.Kind {
		case ExecSend:
			e.string(a.Target)
			e.bytes(a.Arguments)
		case ExecJoin, ExecLeave:
			e.string(a.Group)
		case ExecClose:
			e.string(a.Reason)
		}
	}
	return e.buf
}

// parsedExecute is a decoded and checked CmdExecute.
type parsedExecute struct {
	*Execute
	filter *ConnFilter // nil: no filter
}

func parseExecute(payload []byte) (*parsedExecute, error) {
	d := decoder{buf: payload}
	x := &Execute{Hub: d.string(), Group: d.string(), User: d.string(), Excluded: d.strings(), Filter: d.string()}
	n := d.uvarint()
	if d.err == nil && (n == 0 || n > MaxExecActions) {
		return nil, fmt.Errorf("%w: an execute command holds 1 to %d actions", ErrInvalidCommand, MaxExecActions)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		a := ExecAction{Kind: ExecKind(d.byte())}
		switch a.Kind {
		case ExecSend:
			a.Target = d.string()
			a.Arguments = d.bytes()
		case ExecJoin, ExecLeave:
			a.Group = d.string()
		case ExecClose:
			a.Reason = d.string()
		default:
			if d.err == nil {
				return nil, fmt.Errorf("%w: unknown execute action %d", ErrInvalidCommand, a.Kind)
			}
		}
		x.Actions = append(x.Actions, a)
	}
	if err := d.done("execute"); err != nil {
		return nil, err
	}
	return validateExecute(x)
}

// ValidateExecute checks an Execute command's fields, its filter included.
func ValidateExecute(x *Execute) error {
	_, err := validateExecute(x)
	return err
}

func validateExecute(x *Execute) (*parsedExecute, error) {
	if err := ValidateHub(x.Hub); err != nil {
		return nil, err
	}
	if x.Group != "" && x.User != "" {
		return nil, fmt.Errorf("%w: an execute command selects a group or a user, not both", ErrInvalidCommand)
	}
	if x.Group != "" {
		if err := ValidateGroup(x.Group); err != nil {
			return nil, err
		}
	}
	if x.User != "" {
		if err := ValidateName("user", x.User); err != nil {
			return nil, err
		}
	}
	if len(x.Excluded) > MaxNamesPerSend {
		return nil, fmt.Errorf("%w: at most %d excluded connections", ErrInvalidCommand, MaxNamesPerSend)
	}
	for _, c := range x.Excluded {
		if err := ValidateName("excluded connection", c); err != nil {
			return nil, err
		}
	}
	if len(x.Actions) == 0 || len(x.Actions) > MaxExecActions {
		return nil, fmt.Errorf("%w: an execute command holds 1 to %d actions", ErrInvalidCommand, MaxExecActions)
	}
	for i, a := range x.Actions {
		if err := validateExecAction(a); err != nil {
			return nil, fmt.Errorf("action %d: %w", i, err)
		}
	}
	px := &parsedExecute{Execute: x}
	if x.Filter != "" {
		f, err := ParseFilter(x.Filter)
		if err != nil {
			return nil, err
		}
		px.filter = f
	}
	return px, nil
}

func validateExecAction(a ExecAction) error {
	switch a.Kind {
	case ExecSend:
		if a.Target == "" || len(a.Target) > MaxTargetLen {
			return fmt.Errorf("%w: target must be 1 to %d bytes", ErrInvalidCommand, MaxTargetLen)
		}
		if len(a.Arguments) == 0 || a.Arguments[0] != '[' {
			return fmt.Errorf("%w: arguments must be a JSON array", ErrInvalidCommand)
		}
	case ExecJoin, ExecLeave:
		return ValidateGroup(a.Group)
	case ExecClose:
		if len(a.Reason) > MaxReasonLen {
			return fmt.Errorf("%w: a close reason is at most %d bytes", ErrInvalidCommand, MaxReasonLen)
		}
	default:
		return fmt.Errorf("%w: unknown execute action %d", ErrInvalidCommand, a.Kind)
	}
	return nil
}

// execConn is a selected connection.
type execConn struct{ id, user string }

// execute applies an Execute command; parseCommand validated x. Its result
// carries the index of the last message it appended (0 when none).
func (ap *applyState) execute(ts int64, x *parsedExecute) (Result, error) {
	conns, err := ap.selectConnections(x)
	if err != nil {
		return Result{}, err
	}
	var res Result
	closed := map[string]bool{}
	for _, a := range x.Actions {
		live := conns[:0:0]
		for _, c := range conns {
			if !closed[c.id] {
				live = append(live, c)
			}
		}
		switch a.Kind {
		case ExecSend:
			args := append([]byte(nil), a.Arguments...) // it outlives the entry, in the tail
			for chunk := range slices.Chunk(live, MaxNamesPerSend) {
				p := &Publish{Hub: x.Hub, Audience: ToConnections, Target: a.Target, Arguments: args}
				for _, c := range chunk {
					p.Names = append(p.Names, c.id)
				}
				r, err := ap.publish(ts, EncodePublish(p), p)
				if err != nil {
					return Result{}, err
				}
				res.Index = r.Index
			}
		case ExecJoin, ExecLeave:
			for _, c := range live {
				m := &Membership{Hub: x.Hub, Group: a.Group, Kind: MemberConnection, Member: c.id}
				if _, err := ap.membership(m, a.Kind == ExecJoin); err != nil {
					return Result{}, err
				}
			}
		case ExecClose:
			for _, c := range live {
				if _, err := ap.connClose(&Connection{Hub: x.Hub, ConnID: c.id, Reason: a.Reason}); err != nil {
					return Result{}, err
				}
				closed[c.id] = true
			}
		}
	}
	return res, nil
}

// selectConnections lists the open connections x selects, by connection
// id.
func (ap *applyState) selectConnections(x *parsedExecute) ([]execConn, error) {
	var cands []execConn
	var err error
	switch {
	case x.User != "":
		cands, err = ap.userConnections(x.Hub, x.User)
	case x.Group != "":
		cands, err = ap.groupConnections(x.Hub, x.Group)
	default:
		cands, err = ap.hubConnections(x.Hub)
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(cands, func(a, b execConn) int { return strings.Compare(a.id, b.id) })
	cands = slices.CompactFunc(cands, func(a, b execConn) bool { return a.id == b.id })
	excluded := make(map[string]bool, len(x.Excluded))
	for _, id := range x.Excluded {
		excluded[id] = true
	}
	sets := &groupSets{ap: ap, hub: x.Hub, sets: map[string]*groupSet{}}
	out := cands[:0]
	for _, c := range cands {
		if excluded[c.id] {
			continue
		}
		if x.filter != nil && !x.filter.Match(sets.filterSubject(c)) {
			continue
		}
		out = append(out, c)
	}
	return out, sets.err
}

// groupSet is a group's members: connections and users.
type groupSet struct{ conns, users map[string]bool }

// groupSets reads each group a filter names once per command.
type groupSets struct {
	ap   *applyState
	hub  string
	sets map[string]*groupSet
	err  error // the first read error
}

func (g *groupSets) of(group string) *groupSet {
	if s, ok := g.sets[group]; ok {
		return s
	}
	s := &groupSet{conns: map[string]bool{}, users: map[string]bool{}}
	prefix := groupPrefix(g.hub, group)
	c := g.ap.groups.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		kind, name, ok := splitMemberKey(k[len(prefix):])
		if !ok {
			g.err = cmp.Or(g.err, fmt.Errorf("%w: group key", ErrCorrupt))
			break
		}
		switch kind {
		case MemberConnection:
			s.conns[name] = true
		case MemberUser:
			s.users[name] = true
		}
	}
	g.sets[group] = s
	return s
}

// splitMemberKey reads the member kind and name that end a groups key.
func splitMemberKey(rest []byte) (MemberKind, string, bool) {
	if len(rest) < 1 {
		return 0, "", false
	}
	name, tail, ok := readLP(rest[1:])
	return MemberKind(rest[0]), name, ok && len(tail) == 0
}

// filterSubject is a connection as a filter sees it: its groups are those
// it is in directly or through its user.
func (g *groupSets) filterSubject(c execConn) FilterSubject {
	return FilterSubject{ConnectionID: c.id, UserID: c.user, InGroup: func(group string) bool {
		s := g.of(group)
		return s.conns[c.id] || (c.user != "" && s.users[c.user])
	}}
}

// connUser reads an open connection's user; ok is false if it is not open.
func (ap *applyState) connUser(hub, conn string) (user string, ok bool, err error) {
	rec := ap.conns.Get(connKey(hub, conn))
	if rec == nil {
		return "", false, nil
	}
	if user, err = connRecordUser(rec); err != nil {
		return "", false, err
	}
	return user, true, nil
}

// connRecordUser reads the user of a connection record (see connOpen).
func connRecordUser(rec []byte) (string, error) {
	d := decoder{buf: rec}
	user := d.string()
	if d.err != nil {
		return "", fmt.Errorf("connection record: %w", d.err)
	}
	return user, nil
}

func (ap *applyState) hubConnections(hub string) ([]execConn, error) {
	var out []execConn
	err := eachNameUnder(ap.conns, appendLP(nil, hub), "connection key", func(id string, rec []byte) error {
		user, err := connRecordUser(rec)
		if err != nil {
			return err
		}
		out = append(out, execConn{id: id, user: user})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (ap *applyState) userConnections(hub, user string) ([]execConn, error) {
	var out []execConn
	err := eachNameUnder(ap.userConns, userConnsPrefix(hub, user), "userConns key", func(id string, _ []byte) error {
		out = append(out, execConn{id: id, user: user})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// groupConnections lists the open connections in a group: its connection
// members, and the connections of its user members.
func (ap *applyState) groupConnections(hub, group string) ([]execConn, error) {
	var out []execConn
	var users []string
	prefix := groupPrefix(hub, group)
	c := ap.groups.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		kind, name, ok := splitMemberKey(k[len(prefix):])
		if !ok {
			return nil, fmt.Errorf("%w: group key", ErrCorrupt)
		}
		switch kind {
		case MemberConnection:
			user, open, err := ap.connUser(hub, name)
			if err != nil {
				return nil, err
			}
			if open {
				out = append(out, execConn{id: name, user: user})
			}
		case MemberUser:
			users = append(users, name)
		}
	}
	for _, u := range users {
		conns, err := ap.userConnections(hub, u)
		if err != nil {
			return nil, err
		}
		out = append(out, conns...)
	}
	return out, nil
}
