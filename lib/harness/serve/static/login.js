"use strict";
// the login page: says so when the last try was wrong (/login?wrong=1)
document.getElementById("wrong").hidden = !new URLSearchParams(location.search).has("wrong");
