import { run } from './run.js';
import { main } from './tswl-host.js';

run('tswl-host', main);
