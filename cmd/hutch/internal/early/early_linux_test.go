package early

import "testing"

func TestFirstArgIsRun(t *testing.T) {
	for cmdline, want := range map[string]bool{
		"hutch\x00run\x00--image\x00x\x00--\x00true\x00": true,
		"/usr/bin/hutch\x00run\x00":                      true,
		"hutch\x00runner\x00":                            false,
		"hutch\x00images\x00":                            false,
		"hutch\x00run":                                   false, // cut short
		"hutch\x00":                                      false,
		"run\x00":                                        false, // the program's own name
	} {
		if got := firstArgIsRun([]byte(cmdline)); got != want {
			t.Errorf("%q: %v, want %v", cmdline, got, want)
		}
	}
}
