package members

// Startup is the function OnStartup registers, for the tests.
var Startup = startup
