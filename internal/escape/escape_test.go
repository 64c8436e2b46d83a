package escape

import "testing"

func TestFormatParse(t *testing.T) {
	tests := []struct {
		name, out, verdict, detail string
		ok                         bool
	}{
		{"one line", Format(Blocked, "open /x: ENOENT"), "blocked", "open /x: ENOENT", true},
		{"detail folded", Format(Escaped, "a\nb\t c"), "escaped", "a b c", true},
		{"empty detail", Format(Done, ""), "done", "", true},
		{"last line wins", "noise\n" + Format(Error, "first") + Format(Blocked, "second") + "more noise\n", "blocked", "second", true},
		{"no line", "RESULTS blocked\nnothing\n", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, d, ok := Parse([]byte(tt.out))
			if string(v) != tt.verdict || d != tt.detail || ok != tt.ok {
				t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q, %v", tt.out, v, d, ok, tt.verdict, tt.detail, tt.ok)
			}
		})
	}
}
