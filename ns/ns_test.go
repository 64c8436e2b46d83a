package ns

import "testing"

func TestFormat(t *testing.T) {
	got := Format(Self(1000), IDMap{Inside: 1, Outside: 100000, Count: 65535})
	want := "0 1000 1\n1 100000 65535\n"
	if got != want {
		t.Fatalf("Format = %q, want %q", got, want)
	}
}
