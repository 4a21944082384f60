package access

import (
	"errors"
	"testing"
)

func TestPermissionsAllows(t *testing.T) {
	t.Parallel()
	p := Permissions{"backplane.sendToAll", "backplane.joinLeaveGroup.room1", "backplane.sendToGroup.a.b", "other.role"}
	for _, tc := range []struct {
		perm, group string
		want        bool
	}{
		{PermSendToAll, "", true},
		{PermSendToAll, "room1", true}, // a group does not matter to a hub-wide permission
		{PermJoinLeaveGroup, "room1", true},
		{PermJoinLeaveGroup, "room2", false},
		{PermJoinLeaveGroup, "room", false},   // no prefix match on the group
		{PermJoinLeaveGroup, "room10", false}, // nor on a longer name
		{PermJoinLeaveGroup, "Room1", false},  // group names match exactly
		{PermJoinLeaveGroup, "", false},       // room1 alone does not grant every group
		{PermSendToGroup, "a.b", true},        // group names may hold dots
		{PermSendToGroup, "a", false},
		{PermSendToGroup, "room1", false}, // joinLeaveGroup.room1 does not grant sending
		{PermSendToUser, "", false},
		{PermSendToConnection, "", false},
	} {
		if got := p.Allows(tc.perm, tc.group); got != tc.want {
			t.Errorf("Allows(%q, %q): got %v, want %v", tc.perm, tc.group, got, tc.want)
		}
	}

	// Permission names match case-sensitively; per-user and per-connection
	// permissions have no per-group form.
	for _, p := range []Permissions{
		{"backplane.sendtoall"},
		{"Backplane.sendToAll"},
		{"backplane.sendToAll "},
		{"backplane.sendToAll.room1"},
		{"webpubsub.sendToAll"},
		nil,
	} {
		if p.Allows(PermSendToAll, "room1") {
			t.Errorf("%q allows %s, want not", p, PermSendToAll)
		}
	}
	if (Permissions{"backplane.sendToUser.bob"}).Allows(PermSendToUser, "bob") {
		t.Error("backplane.sendToUser.bob allows SendToUser, want not: only the group permissions have a per-group form")
	}
	if !(Permissions{PermJoinLeaveGroup}).Allows(PermJoinLeaveGroup, "anything") {
		t.Errorf("%s does not allow every group, want it to", PermJoinLeaveGroup)
	}
}

func TestPermissionsCheckNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	var none Permissions
	for _, tc := range []struct {
		perm, group, want string
	}{
		{PermSendToAll, "", "permission denied: the token does not grant backplane.sendToAll"},
		{PermJoinLeaveGroup, "admins", "permission denied: the token does not grant backplane.joinLeaveGroup or backplane.joinLeaveGroup.admins"},
		{PermSendToGroup, "", "permission denied: the token does not grant backplane.sendToGroup"},
		{PermSendToUser, "ignored", "permission denied: the token does not grant backplane.sendToUser"},
	} {
		err := none.Check(tc.perm, tc.group)
		if err == nil || err.Error() != tc.want || !errors.Is(err, ErrPermissionDenied) {
			t.Errorf("Check(%q, %q): got %v, want %q wrapping ErrPermissionDenied", tc.perm, tc.group, err, tc.want)
		}
	}
	if err := (Permissions{"backplane.sendToGroup.g"}).Check(PermSendToGroup, "g"); err != nil {
		t.Errorf("Check with the group's permission: got %v, want nil", err)
	}
}

func TestRestricted(t *testing.T) {
	t.Parallel()
	for policy, want := range map[string]bool{"": false, RelayOpen: false, RelayRoles: true, "Open": true, "bogus": true} {
		if got := Restricted(policy); got != want {
			t.Errorf("Restricted(%q): got %v, want %v", policy, got, want)
		}
	}
}
