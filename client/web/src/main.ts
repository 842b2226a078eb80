import { mount } from "svelte";

import App from "./App.svelte";
import { installBenchHooks } from "./lib/cryptocost";
import "./app.css";

installBenchHooks();

const target = document.getElementById("app");
if (target === null) throw new Error("index.html has no #app element");
mount(App, { target });
