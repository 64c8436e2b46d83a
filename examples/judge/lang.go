package main

// A language says how a submission is compiled and run. Every path is inside
// the sandbox: the submission's directory is bound at /work, writable for
// the compile and read-only for the runs.
type language struct {
	// Source is the file name the source is written to, in /work.
	Source string
	// Compile is the compile command; for Python it only checks the syntax,
	// so that a script that does not parse is a compile_error like a C file
	// that does not compile.
	Compile []string
	// Run runs the compiled program with the test's input on stdin.
	Run []string
	// Env is the environment of both commands.
	Env []string
}

const workDir = "/work"

// pySyntaxCheck compiles the script named by argv[1] without running it and
// prints only the error itself, not a traceback through this checker.
const pySyntaxCheck = `import sys, traceback
try:
    with open(sys.argv[1], "rb") as f:
        compile(f.read(), "main.py", "exec")
except (SyntaxError, ValueError) as e:
    sys.stderr.write("".join(traceback.format_exception_only(type(e), e)))
    sys.exit(1)
`

var languages = map[string]*language{
	"c": {
		Source: "main.c",
		Compile: []string{"gcc", "-std=gnu17", "-O2", "-pipe", "-fdiagnostics-color=never",
			"-o", workDir + "/main", workDir + "/main.c", "-lm"},
		Run: []string{workDir + "/main"},
		Env: []string{"LANG=C.UTF-8", "HOME=/tmp"},
	},
	"cpp": {
		Source: "main.cpp",
		Compile: []string{"g++", "-std=gnu++17", "-O2", "-pipe", "-fdiagnostics-color=never",
			"-o", workDir + "/main", workDir + "/main.cpp"},
		Run: []string{workDir + "/main"},
		Env: []string{"LANG=C.UTF-8", "HOME=/tmp"},
	},
	"python": {
		Source:  "main.py",
		Compile: []string{"python3", "-I", "-c", pySyntaxCheck, workDir + "/main.py"},
		Run:     []string{"python3", "-I", "-B", workDir + "/main.py"},
		Env:     []string{"LANG=C.UTF-8", "HOME=/tmp", "PYTHONDONTWRITEBYTECODE=1"},
	},
}

// languageNames lists the languages for error messages, in a fixed order.
const languageNames = `"c", "cpp", "python"`
